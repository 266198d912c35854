/**
 * Compare view of a pie tag: one pie per run side by side (class colours
 * shared), each captioned with its run and step, one class legend, and a
 * hover with run, class, value and share. Non-finite class values get no
 * slice; the run's caption says so in red.
 *
 * update(datasets): [{run, color, step, data: /data response | null}]
 */

import {
  classColor, formatPercent, formatValue, labelFor, pieHit, pieSlices,
} from '../charts.js';
import { CANVAS_FONT, el, setupCanvas } from '../dom.js';
import { createSwatchLegend } from './legend.js';

const SIZE = 170;

export function createComparePiesView(container, tooltip) {
  const panels = el('div', { class: 'compare-panels' });
  const legend = createSwatchLegend('pie-legend compare-legend');
  container.append(panels, legend.element);
  let drawn = []; // per run: {canvas, pie, values, labels, geom, run}

  function build(datasets) {
    drawn = [];
    panels.replaceChildren(...datasets.map(({ run, color, step, data }) => {
      const caption = el('div', { class: 'panel-caption' }, [
        el('span', { class: 'swatch swatch-round', style: { background: color } }),
        el('span', { class: 'panel-run', text: run }),
        el('span', { class: 'panel-step', text: data ? `step ${step}` : '' }),
      ]);
      if (!data || !data.values.length) {
        return el('div', { class: 'compare-panel is-empty' }, [
          caption, el('div', { class: 'panel-empty', text: 'no data for this run yet' }),
        ]);
      }
      const canvas = el('canvas', { class: 'chart-canvas pie-canvas', 'aria-label': `pie chart of ${run}` });
      const pie = pieSlices(data.values);
      const entry = { canvas, pie, values: data.values, labels: data.labels || [], run, geom: null, hover: -1 };
      drawn.push(entry);
      canvas.addEventListener('mousemove', (event) => onHover(entry, event));
      canvas.addEventListener('mouseleave', () => {
        entry.hover = -1;
        tooltip.hide();
        drawPie(entry);
      });
      const bad = pie.invalid.length;
      return el('div', { class: 'compare-panel' }, [
        caption,
        canvas,
        bad ? el('div', { class: 'view-note is-nonfinite', text: `${bad} class value${bad > 1 ? 's' : ''} NaN/Inf or negative` }) : null,
      ]);
    }));
    const first = datasets.find((d) => d.data && d.data.values.length);
    const n = Math.max(0, ...datasets.map((d) => (d.data ? d.data.values.length : 0)));
    legend.set(Array.from({ length: n }, (_, i) => ({
      color: classColor(i), label: labelFor(first ? first.data.labels : [], i),
    })));
  }

  function drawPie(entry) {
    const { ctx, width, height } = setupCanvas(entry.canvas, SIZE);
    const r = Math.min(width, height) / 2 - 8;
    entry.geom = { cx: width / 2, cy: height / 2, r };
    if (entry.pie.allZero) {
      ctx.strokeStyle = '#bdbdbd';
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.arc(entry.geom.cx, entry.geom.cy, r, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = '#757575';
      ctx.font = CANVAS_FONT;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(entry.pie.invalid.length ? 'no finite share' : 'all values are 0', entry.geom.cx, entry.geom.cy);
      return;
    }
    for (const s of entry.pie.slices) {
      const lift = s.index === entry.hover ? 4 : 0;
      const mid = (s.start + s.end) / 2;
      const ox = Math.cos(mid) * lift;
      const oy = Math.sin(mid) * lift;
      ctx.beginPath();
      ctx.moveTo(entry.geom.cx + ox, entry.geom.cy + oy);
      ctx.arc(entry.geom.cx + ox, entry.geom.cy + oy, r - (lift ? 0 : 2), s.start, s.end);
      ctx.closePath();
      ctx.fillStyle = classColor(s.index);
      ctx.fill();
      if (entry.pie.slices.length > 1) {
        ctx.strokeStyle = '#ffffff';
        ctx.lineWidth = 1;
        ctx.stroke();
      }
    }
  }

  function onHover(entry, event) {
    if (!entry.geom) return;
    const { cx, cy, r } = entry.geom;
    const i = pieHit(entry.pie.slices, cx, cy, r, event.offsetX, event.offsetY);
    if (i !== entry.hover) {
      entry.hover = i;
      drawPie(entry);
    }
    if (i < 0) {
      tooltip.hide();
      return;
    }
    tooltip.show(event, [
      labelFor(entry.labels, i),
      ['run', entry.run],
      ['value', formatValue(entry.values[i])],
      ['share', formatPercent(entry.pie.percents[i])],
    ]);
  }

  const drawAll = () => drawn.forEach(drawPie);

  return {
    update(datasets) {
      build(datasets);
      drawAll();
    },
    redraw: drawAll,
    exportParts: () => ({
      canvases: drawn.map((d) => ({ canvas: d.canvas, caption: d.run })),
      legend: legend.exportPart(),
    }),
  };
}
