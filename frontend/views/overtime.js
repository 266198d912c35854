/**
 * Over-time views, fed by a whole /series response:
 *
 * - bars tags: a layers x steps matrix in a viridis colour scale (linear or
 *   log), the gradient flow of the whole training in one picture: a
 *   vanishing layer is a dark row. Non-finite cells are red and their layer
 *   name too; hover shows layer, step and value.
 * - pie tags: the class shares over steps as a stacked area, a class legend,
 *   hover with every class's share at the nearest step. Steps whose values
 *   cannot be shares (NaN/Inf, negative, all zero) are gaps marked in red.
 *
 * DOM hooks: `.overtime-canvas`, `.stacked-canvas`, `.log-toggle`.
 */

import {
  classColor, formatPercent, formatValue, labelFor, linearTicks, NONFINITE_COLOR,
} from '../charts.js';
import { colorStops, sequentialColor, sequentialScale, viridisColor } from '../colors.js';
import { CANVAS_FONT, el, setupCanvas, trackHover } from '../dom.js';
import { layerStepMatrix, stackedAreaLayout, stackedHit, stackedShares, stepScale } from '../series.js';
import { drawValueGrid } from './axes.js';
import { createColorbar, createSwatchLegend } from './legend.js';
import { createMatrixCanvas } from './matrix.js';

const VIRIDIS_CSS = colorStops(viridisColor);

/**
 * Layers x steps matrix of a bars tag.
 * @param {HTMLElement} container
 * @param {{show: Function, hide: Function}} tooltip
 */
export function createLayerStepsView(container, tooltip) {
  const toggle = el('input', { type: 'checkbox', class: 'log-toggle', 'aria-label': 'log colour scale' });
  const colorbar = createColorbar();
  let matrix = null;
  let m = null;
  let labels = [];
  let statName = 'value';
  let focused = new Set(); // layer names a clicked finding points at

  toggle.addEventListener('change', () => draw());

  function mount() {
    const longest = Math.max(1, ...Array.from({ length: m.rows }, (_, i) => labelFor(labels, i, 'layer').length));
    matrix = createMatrixCanvas({
      className: 'overtime-canvas',
      ariaLabel: 'layers by steps',
      shape: 'rows',
      height: 280,
      rowLabels: 'all',
      colLabels: 'ticks',
      // Many rows are usually long module names ("blocks.12.attn/head3"):
      // more room, so their distinguishing middle is not cut.
      left: Math.max(30, Math.min(m.rows > 40 ? 180 : 120, 10 + longest * 6.2)),
      xTitle: 'step',
    });
    matrix.onHover(onHover);
    container.replaceChildren(
      el('div', { class: 'view-toolbar' }, [el('label', { class: 'toggle' }, [toggle, ' log colour scale'])]),
      matrix.canvas,
      colorbar.element,
    );
  }

  function draw() {
    if (!matrix) return;
    // A linear scale starts at 0: cards of two runs (entropy, update ratios)
    // then read alike, instead of each stretching its own range.
    const scale = sequentialScale(m.grid, { log: toggle.checked, zero: true });
    matrix.set(m.grid, {
      colorOf: (v) => sequentialColor(scale, v),
      rowName: (i) => labelFor(labels, i, 'layer'),
      colName: (j) => String(m.steps[j]),
      rowFlag: (i) => m.flagged[i],
      rowMark: (i) => focused.has(labelFor(labels, i, 'layer')),
    });
    const special = [];
    const cells = m.grid.flat();
    if (cells.some((v) => scale.classify(v) === 'nonfinite')) special.push('nonfinite');
    if (cells.some((v) => scale.classify(v) === 'nonpositive')) special.push('nonpositive');
    if (cells.some((v) => scale.classify(v) === 'missing')) special.push('missing');
    colorbar.set({
      colors: VIRIDIS_CSS,
      min: scale.empty ? '–' : formatValue(scale.domain[0]),
      max: scale.empty ? '–' : formatValue(scale.domain[1]),
      title: `${statName}${toggle.checked ? ', log colour scale' : ''}`,
      special,
    });
  }

  function onHover(hit, event) {
    if (!hit) {
      tooltip.hide();
      return;
    }
    const v = m.grid[hit.row][hit.col];
    tooltip.show(event, [
      labelFor(labels, hit.row, 'layer'),
      ['step', String(m.steps[hit.col])],
      [statName, v === null ? 'not logged' : formatValue(v), v !== null && !Number.isFinite(v) ? 'is-nonfinite' : ''],
    ]);
  }

  return {
    update(series) {
      const rowsBefore = m ? m.rows : -1;
      m = layerStepMatrix(series);
      labels = series.labels || [];
      statName = (series.stat_names || [])[0] || 'value';
      if (!matrix || rowsBefore !== m.rows) mount();
      draw();
    },
    redraw: () => matrix && matrix.draw(),
    /**
     * Outlines the rows of `labels` (a clicked finding).
     * @returns {string[]} the labels that are rows of this chart
     */
    focus({ labels: names = [] } = {}) {
      focused = new Set(names);
      draw();
      const present = new Set(m ? Array.from({ length: m.rows }, (_, i) => labelFor(labels, i, 'layer')) : []);
      return names.filter((name) => present.has(name));
    },
    exportParts: () => ({
      canvases: matrix ? [{ canvas: matrix.canvas, caption: 'layers (rows) by step (columns)' }] : [],
      colorbars: [colorbar.exportPart()],
    }),
  };
}

const STACK_HEIGHT = 230;
const STACK_MARGIN = { left: 40, right: 10, top: 8, bottom: 34 };

/**
 * Class shares over steps of a pie tag (stacked area).
 * @param {HTMLElement} container
 * @param {{show: Function, hide: Function}} tooltip
 */
export function createStackedView(container, tooltip) {
  const canvas = el('canvas', { class: 'chart-canvas stacked-canvas', 'aria-label': 'class shares over steps' });
  const note = el('div', { class: 'view-note is-nonfinite', hidden: true });
  const legend = createSwatchLegend('stacked-legend');
  container.append(canvas, note, legend.element);

  let stacked = null;
  let labels = [];
  let values = [];
  let box = null;
  let focused = new Set(); // class names a clicked finding points at

  function markLegend() {
    legend.items().forEach((item, k) => item.classList.toggle('is-focus', focused.has(labelFor(labels, k))));
  }

  function draw() {
    if (!stacked) return;
    const { ctx, width, height } = setupCanvas(canvas, STACK_HEIGHT);
    box = {
      x: STACK_MARGIN.left,
      y: STACK_MARGIN.top,
      width: width - STACK_MARGIN.left - STACK_MARGIN.right,
      height: height - STACK_MARGIN.top - STACK_MARGIN.bottom,
    };
    ctx.font = CANVAS_FONT;
    drawAxes(ctx);
    const { bands, toX } = stackedAreaLayout(stacked, box);
    const hit = hover.current;
    bands.forEach((segments, k) => {
      ctx.fillStyle = classColor(k);
      ctx.globalAlpha = hit && hit.cls >= 0 && hit.cls !== k ? 0.55 : 1;
      for (const seg of segments) {
        ctx.beginPath();
        if (seg.length === 1) {
          // A lone valid step between gaps: a thin column, still visible.
          const p = seg[0];
          ctx.rect(p.x - 2, p.top, 4, p.bottom - p.top);
        } else {
          seg.forEach((p, i) => (i ? ctx.lineTo(p.x, p.top) : ctx.moveTo(p.x, p.top)));
          for (let i = seg.length - 1; i >= 0; i--) ctx.lineTo(seg[i].x, seg[i].bottom);
          ctx.closePath();
        }
        ctx.fill();
      }
    });
    ctx.globalAlpha = 1;
    // Invalid steps: a red dashed line through the gap and a marker on top.
    ctx.strokeStyle = NONFINITE_COLOR;
    ctx.fillStyle = NONFINITE_COLOR;
    ctx.setLineDash([3, 3]);
    for (const { step } of stacked.invalid) {
      const x = Math.round(toX(step)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, box.y);
      ctx.lineTo(x, box.y + box.height);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    for (const { step } of stacked.invalid) {
      const x = toX(step);
      ctx.beginPath();
      ctx.moveTo(x - 4, box.y);
      ctx.lineTo(x + 4, box.y);
      ctx.lineTo(x, box.y + 6);
      ctx.closePath();
      ctx.fill();
    }
    if (hit) {
      const x = Math.round(toX(stacked.steps[hit.index])) + 0.5;
      ctx.strokeStyle = '#212121';
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x, box.y);
      ctx.lineTo(x, box.y + box.height);
      ctx.stroke();
    }
  }

  function drawAxes(ctx) {
    drawValueGrid(ctx, box, [0, 25, 50, 75, 100], (p) => box.y + box.height - (p / 100) * box.height, {
      label: (p) => `${p}%`,
    });
    const steps = stacked.steps;
    const toX = stepScale(steps, box);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    // Steps are whole numbers: no "0.2" ticks between steps 0 and 1.
    let ticks = steps.length > 1 ? linearTicks(steps[0], steps[steps.length - 1], 5).filter(Number.isInteger) : steps;
    if (ticks.length < 2) ticks = steps.length > 1 ? [steps[0], steps[steps.length - 1]] : steps;
    for (const t of ticks) ctx.fillText(formatValue(t), toX(t), box.y + box.height + 4);
    ctx.fillText('step', box.x + box.width / 2, box.y + box.height + 19);
  }

  function tooltipLines(hit) {
    const step = stacked.steps[hit.index];
    const shares = stacked.shares[hit.index];
    const lines = [`step ${step}`];
    if (!shares) {
      const why = stacked.invalid.find((x) => x.step === step);
      lines.push(['no shares', why ? why.reason : '', 'is-nonfinite']);
    }
    const raw = values[hit.index] || [];
    for (let k = 0; k < stacked.classes; k++) {
      const text = shares ? formatPercent(shares[k] * 100) : formatValue(raw[k]);
      const bad = !Number.isFinite(raw[k]);
      lines.push([labelFor(labels, k), text, bad ? 'is-nonfinite' : k === hit.cls ? 'is-current' : '']);
    }
    return lines;
  }

  const hover = trackHover(canvas, tooltip, {
    hitAt: (event) => (stacked && box ? stackedHit(stacked, box, event.offsetX, event.offsetY) : undefined),
    lines: tooltipLines,
    redraw: draw,
    none: null,
    same: (a, b) => a && b && a.index === b.index && a.cls === b.cls,
  });

  return {
    update(series) {
      stacked = stackedShares(series);
      labels = series.labels || [];
      values = series.values || [];
      hover.clear();
      legend.set(Array.from({ length: stacked.classes }, (_, k) => ({ color: classColor(k), label: labelFor(labels, k) })));
      markLegend();
      const bad = stacked.invalid;
      note.hidden = !bad.length;
      note.textContent = bad.length
        ? `${bad.length} step${bad.length > 1 ? 's' : ''} without shares (red): `
          + `${bad.slice(0, 4).map((x) => `${x.step} (${x.reason})`).join(', ')}${bad.length > 4 ? ', …' : ''}`
        : '';
      draw();
    },
    redraw: draw,
    /**
     * Marks the legend entries of `labels` (a clicked finding's classes).
     * @returns {string[]} the labels that are classes of this chart
     */
    focus({ labels: names = [] } = {}) {
      focused = new Set(names);
      markLegend();
      const present = new Set(Array.from({ length: stacked ? stacked.classes : 0 }, (_, k) => labelFor(labels, k)));
      return names.filter((name) => present.has(name));
    },
    exportParts: () => ({
      canvases: [{ canvas, caption: 'class shares over steps' }],
      legend: legend.exportPart(),
      warnings: note.hidden ? [] : [note.textContent],
    }),
  };
}
