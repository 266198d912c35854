/**
 * Compare view of a bars tag: grouped bars, one group per layer and one bar
 * per run in the run's colour, on one shared axis (linear or log), a run
 * legend, and a hover listing every run's value for the layer. Layers are
 * matched by name, so runs of different models share their common layers.
 * Non-finite values are red markers and their layer name is red.
 *
 * update(datasets): [{run, color, data: /data response | null}]
 */

import {
  formatValue, labelFor, labelStride, NONFINITE_COLOR, slantedLabelRoom,
} from '../charts.js';
import { CANVAS_FONT, el, setupCanvas, trackHover } from '../dom.js';
import { groupedBarHit, groupedBarLayout } from '../grouped.js';
import { unionLabels } from '../stats.js';
import { drawBarAxis, drawHoverBand, drawSlantedLabels } from './axes.js';
import { fillMarker } from './bars.js';
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

  toggle.addEventListener('change', () => {
    hover.clear();
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
    const room = slantedLabelRoom(layers.map((t) => ctx.measureText(t).width));
    box = { x: MARGIN.left, y: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - room };
    layout = groupedBarLayout(matrix, box, toggle.checked ? 'log' : 'linear');
    drawBarAxis(ctx, box, layout);
    drawHoverBand(ctx, box, layout.band, hover.current ? hover.current.layer : -1);
    for (const bar of layout.bars) drawBar(ctx, bar);
    drawSlantedLabels(ctx, {
      box,
      band: layout.band,
      names: layers,
      stride: labelStride(layers.length, layout.band, 16),
      room,
      flagged: flaggedLayer,
    });
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
      fillMarker(ctx, 'diamond', cx, y, s);
    }
  }

  // The highlight is the layer group under the mouse; the tooltip marks its run.
  const hover = trackHover(canvas, tooltip, {
    hitAt: (event) => {
      if (!layout || !box) return undefined;
      return event.offsetY >= box.y ? groupedBarHit(layout, box, event.offsetX) : null;
    },
    lines: (hit) => [layers[hit.layer], ...sets.map(({ run }, r) => {
      const v = matrix[r][hit.layer];
      const text = v === null ? 'not in this run' : formatValue(v);
      const cls = typeof v === 'number' && !Number.isFinite(v) ? 'is-nonfinite' : r === hit.run ? 'is-current' : '';
      return [run, text, cls];
    })],
    redraw: draw,
    none: null,
    same: (a, b) => (a ? a.layer : -1) === (b ? b.layer : -1),
  });

  return {
    update(datasets) {
      hover.clear();
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
