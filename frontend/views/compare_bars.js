/**
 * Compare view of a bars tag: grouped bars, one group per layer and one bar
 * per run in the run's colour, on one shared axis (linear or log), a run
 * legend, and a hover listing every run's value for the layer. Layers are
 * matched by name, so runs of different models share their common layers.
 * Non-finite values are red markers and their layer name is red.
 *
 * update(datasets): [{run, color, data: /data response | null}]
 */

import { formatValue, labelFor, labelStride, NONFINITE_COLOR } from '../charts.js';
import { CANVAS_FONT, el, fitText, setupCanvas } from '../dom.js';
import { groupedBarHit, groupedBarLayout } from '../grouped.js';
import { unionLabels } from '../stats.js';
import { createSwatchLegend } from './legend.js';

const HEIGHT = 290;
const MARGIN = { left: 46, right: 8, top: 14 };

export function createCompareBarsView(container, tooltip) {
  const toggle = el('input', { type: 'checkbox', class: 'log-toggle', 'aria-label': 'log scale' });
  const canvas = el('canvas', { class: 'chart-canvas compare-bars-canvas', 'aria-label': 'grouped bar chart' });
  const legend = createSwatchLegend('run-legend');
  container.append(
    el('div', { class: 'view-toolbar' }, [el('label', { class: 'toggle' }, [toggle, ' log scale'])]),
    canvas,
    legend.element,
  );
  let sets = [];
  let layers = []; // layer names (union over runs)
  let matrix = []; // [run][layer]
  let layout = null;
  let box = null;
  let hover = -1;

  toggle.addEventListener('change', () => {
    hover = -1;
    draw();
  });

  function build(datasets) {
    sets = datasets;
    const names = datasets.map(({ data }) => {
      if (!data) return [];
      const n = data.values.length;
      return Array.from({ length: n }, (_, i) => labelFor(data.labels, i, 'layer'));
    });
    layers = unionLabels(names);
    matrix = datasets.map(({ data }, r) => {
      const at = new Map(names[r].map((name, i) => [name, i]));
      return layers.map((name) => {
        if (!data || !at.has(name)) return null;
        const v = data.values[at.get(name)];
        return Array.isArray(v) ? v[0] : v;
      });
    });
    legend.set(datasets.map(({ run, color, data, step }) => ({
      color,
      label: run,
      value: data ? `step ${step}` : 'no data for this run yet',
      flagged: data ? data.values.some((v) => !Number.isFinite(Array.isArray(v) ? v[0] : v)) : false,
    })));
  }

  function flaggedLayer(l) {
    return matrix.some((row) => typeof row[l] === 'number' && !Number.isFinite(row[l]));
  }

  function draw() {
    if (!sets.length) return;
    const { ctx, width, height } = setupCanvas(canvas, HEIGHT);
    ctx.font = CANVAS_FONT;
    const longest = Math.max(0, ...layers.map((t) => ctx.measureText(t).width));
    const room = Math.min(84, Math.max(18, longest * Math.SQRT1_2 + 12));
    box = { x: MARGIN.left, y: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - room };
    layout = groupedBarLayout(matrix, box, toggle.checked ? 'log' : 'linear');
    drawGrid(ctx);
    if (hover >= 0) {
      ctx.fillStyle = 'rgba(0, 0, 0, 0.06)';
      ctx.fillRect(box.x + hover * layout.band, box.y, layout.band, box.height);
    }
    for (const bar of layout.bars) drawBar(ctx, bar);
    drawLabels(ctx, room);
  }

  function drawGrid(ctx) {
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.lineWidth = 1;
    for (const t of layout.ticks) {
      const y = Math.round(layout.toY(t)) + 0.5;
      if (y < box.y - 1 || y > box.y + box.height + 1) continue;
      ctx.strokeStyle = '#eeeeee';
      ctx.beginPath();
      ctx.moveTo(box.x, y);
      ctx.lineTo(box.x + box.width, y);
      ctx.stroke();
      ctx.fillStyle = '#757575';
      ctx.fillText(formatValue(t), box.x - 4, y);
    }
    ctx.strokeStyle = '#9e9e9e';
    const base = Math.round(layout.baseline) + 0.5;
    ctx.beginPath();
    ctx.moveTo(box.x, base);
    ctx.lineTo(box.x + box.width, base);
    ctx.stroke();
  }

  function drawBar(ctx, bar) {
    const cx = bar.x + bar.width / 2;
    if (bar.kind === 'bar') {
      ctx.fillStyle = sets[bar.run].color;
      ctx.fillRect(bar.x, bar.top, bar.width, Math.max(1, bar.bottom - bar.top));
    } else if (bar.kind === 'nonpositive') {
      ctx.strokeStyle = sets[bar.run].color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(cx, layout.baseline - 5, Math.min(3.5, bar.width / 2), 0, 2 * Math.PI);
      ctx.stroke();
    } else if (bar.kind === 'nonfinite') {
      ctx.fillStyle = 'rgba(211, 47, 47, 0.14)';
      ctx.fillRect(bar.x, box.y, bar.width, box.height);
      const s = Math.max(2.5, Math.min(5, bar.width / 2));
      const y = box.y + s + 2;
      ctx.fillStyle = NONFINITE_COLOR;
      ctx.beginPath();
      ctx.moveTo(cx, y - s);
      ctx.lineTo(cx + s, y);
      ctx.lineTo(cx, y + s);
      ctx.lineTo(cx - s, y);
      ctx.closePath();
      ctx.fill();
    }
  }

  function drawLabels(ctx, room) {
    const top = box.y + box.height + 6;
    const stride = labelStride(layers.length, layout.band, 16);
    ctx.textBaseline = 'middle';
    for (let i = 0; i < layers.length; i += stride) {
      const flagged = flaggedLayer(i);
      ctx.fillStyle = flagged ? NONFINITE_COLOR : '#424242';
      ctx.font = flagged ? `bold ${CANVAS_FONT}` : CANVAS_FONT;
      const x = box.x + (i + 0.5) * layout.band;
      const name = fitText(ctx, layers[i], Math.min(room - 10, x - 2) / Math.SQRT1_2);
      ctx.save();
      ctx.translate(x, top);
      ctx.rotate(-Math.PI / 4);
      ctx.textAlign = 'right';
      ctx.fillText(name, 0, 0);
      ctx.restore();
    }
    ctx.font = CANVAS_FONT;
  }

  canvas.addEventListener('mousemove', (event) => {
    if (!layout || !box) return;
    const hit = event.offsetY >= box.y ? groupedBarHit(layout, box, event.offsetX) : null;
    const layer = hit ? hit.layer : -1;
    if (layer !== hover) {
      hover = layer;
      draw();
    }
    if (layer < 0) {
      tooltip.hide();
      return;
    }
    const lines = [layers[layer]];
    sets.forEach(({ run }, r) => {
      const v = matrix[r][layer];
      const text = v === null ? 'not in this run' : formatValue(v);
      const cls = typeof v === 'number' && !Number.isFinite(v) ? 'is-nonfinite' : r === hit.run ? 'is-current' : '';
      lines.push([run, text, cls]);
    });
    tooltip.show(event, lines);
  });
  canvas.addEventListener('mouseleave', () => {
    hover = -1;
    tooltip.hide();
    draw();
  });

  return {
    update(datasets) {
      hover = -1;
      build(datasets);
      draw();
    },
    redraw: draw,
    exportParts: () => ({
      canvases: [{ canvas }],
      legend: legend.exportPart(),
      notes: toggle.checked ? ['log scale'] : [],
    }),
  };
}
