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
import { el, trackHover } from '../dom.js';
import { createSwatchLegend } from './legend.js';
import { paintPie } from './pie.js';

const SIZE = 170;

export function createComparePiesView(container, tooltip) {
  const panels = el('div', { class: 'compare-panels' });
  const legend = createSwatchLegend('pie-legend compare-legend');
  container.append(panels, legend.element);
  let drawn = []; // per run: {canvas, pie, values, labels, geom, run, hover}

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
      const entry = { canvas, pie, values: data.values, labels: data.labels || [], run, geom: null };
      entry.hover = trackHover(canvas, tooltip, {
        hitAt: (event) => {
          const g = entry.geom;
          return g ? pieHit(pie.slices, g.cx, g.cy, g.r, event.offsetX, event.offsetY) : undefined;
        },
        lines: (i) => [
          labelFor(entry.labels, i),
          ['run', run],
          ['value', formatValue(entry.values[i])],
          ['share', formatPercent(pie.percents[i])],
        ],
        redraw: () => drawPie(entry),
      });
      drawn.push(entry);
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
    entry.geom = paintPie(entry.canvas, SIZE, entry.pie, entry.hover.current, 4);
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
