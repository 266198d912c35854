/**
 * Bars view: one bar per layer (column 0 of the values), labelled below the
 * axis, a linear/log toggle, model order or sorted by value, a tooltip with
 * the full layer name, the value and any extra stat columns, and a legend.
 * Non-finite values are a red marker with a NaN/Inf label and a red layer
 * name; on the log scale values <= 0 are a hollow marker.
 *
 * More than ~40 layers (hbars.js): one horizontal row per layer in a box
 * that scrolls vertically (barrows.js), so hundreds of names never overlap.
 *
 * DOM hooks: `.log-toggle`, `.bars-sort` (select: model / desc / asc).
 */

import {
  BAR_LABEL_ROOM, barHit, barLayout, formatValue, labelFor, labelStride, NONFINITE_COLOR, slantedLabelRoom,
} from '../charts.js';
import { CANVAS_FONT, el, setupCanvas, trackHover } from '../dom.js';
import { useHorizontalBars } from '../hbars.js';
import { SORT_MODES, sortOrder } from '../stats.js';
import {
  drawBarAxis, drawHoverBand, drawSlantedLabels, FOCUS_COLOR, styleLabel,
} from './axes.js';
import { createBarRows } from './barrows.js';
import { createSwatchLegend } from './legend.js';

const HEIGHT = 270;
const BAR_COLOR = '#1976d2';
const MARGIN = { left: 46, right: 8, top: 14 };

/**
 * Mounts a bar chart in `container`.
 * @param {HTMLElement} container the card body
 * @param {{show: Function, hide: Function}} tooltip the card's tooltip
 * @returns {{update: function(Object): void, redraw: function(): void}}
 */
export function createBarsView(container, tooltip) {
  const toggle = el('input', { type: 'checkbox', class: 'log-toggle', 'aria-label': 'log scale' });
  const sort = el('select', { class: 'bars-sort', 'aria-label': 'bar order' },
    Object.entries(SORT_MODES).map(([value, text]) => el('option', { value, text })));
  const canvas = el('canvas', { class: 'chart-canvas bars-canvas', 'aria-label': 'bar chart' });
  const legend = createSwatchLegend('bars-legend');
  container.append(
    el('div', { class: 'view-toolbar' }, [
      el('label', { class: 'toggle' }, ['order ', sort]),
      el('label', { class: 'toggle' }, [toggle, ' log scale']),
    ]),
    canvas,
    legend.element,
  );
  // Many layers: one row each, in a scrolling box (barrows.js), made the
  // first time a step has that many.
  let barRows = null;

  let data = []; // per layer, model order: [value, ...extra stats]
  let rows = []; // per bar on screen, in display order
  let order = []; // rows[i] is data[order[i]]
  let labels = [];
  let statNames = [];
  let layout = null;
  let box = null;
  let focused = new Set(); // layer names a clicked finding points at

  toggle.addEventListener('change', () => {
    hover.clear();
    draw();
  });
  sort.addEventListener('change', () => {
    hover.clear();
    arrange();
    draw();
  });

  function arrange() {
    order = sortOrder(data.map((r) => r[0]), sort.value);
    rows = order.map((i) => data[i]);
  }

  function updateLegend() {
    const items = [{ color: BAR_COLOR, label: statNames[0] || 'value' }];
    const bad = data.filter((r) => !Number.isFinite(r[0])).length;
    if (bad) items.push({ color: NONFINITE_COLOR, label: `NaN / Inf (${bad} layer${bad > 1 ? 's' : ''})`, flagged: true });
    legend.set(items);
  }

  function draw() {
    if (!rows.length && !layout) return;
    const horizontal = useHorizontalBars(rows.length);
    if (horizontal && !barRows) {
      barRows = createBarRows(tooltip, (i) => tooltipLines(i));
      canvas.after(barRows.element);
    }
    canvas.hidden = horizontal;
    if (barRows) barRows.element.hidden = !horizontal;
    if (horizontal) {
      barRows.draw({
        values: rows.map((r) => r[0]),
        names: order.map((i) => labelFor(labels, i, 'layer')),
        flagged: (i) => !Number.isFinite(rows[i][0]),
        marked: focusedBars(),
        log: toggle.checked,
      });
      return;
    }
    const { ctx, width, height } = setupCanvas(canvas, HEIGHT);
    ctx.font = CANVAS_FONT;
    const plotWidth = width - MARGIN.left - MARGIN.right;
    const labelPlan = planLabels(ctx, plotWidth);
    box = {
      x: MARGIN.left,
      y: MARGIN.top,
      width: plotWidth,
      height: height - MARGIN.top - labelPlan.room,
    };
    const values = rows.map((r) => r[0]);
    layout = barLayout(values, box, toggle.checked ? 'log' : 'linear');
    drawBarAxis(ctx, box, layout);
    drawHoverBand(ctx, box, layout.band, hover.current);
    const marked = focusedBars();
    // A vanishing layer's bar can be 1 px: the band shows where it is.
    ctx.fillStyle = 'rgba(245, 124, 0, 0.14)';
    for (const i of marked) ctx.fillRect(box.x + i * layout.band, box.y, layout.band, box.height);
    for (const bar of layout.bars) drawBar(ctx, bar);
    ctx.strokeStyle = FOCUS_COLOR;
    ctx.lineWidth = 2;
    for (const i of marked) {
      const bar = layout.bars[i];
      const top = bar.kind === 'bar' ? bar.top : box.y;
      const bottom = bar.kind === 'bar' ? Math.max(bar.top + 1, bar.bottom) : box.y + box.height;
      ctx.strokeRect(bar.x - 1, top - 1, bar.width + 2, bottom - top + 2);
    }
    drawLabels(ctx, labelPlan);
  }

  // Bars (display order) whose layer a finding names.
  function focusedBars() {
    if (!focused.size) return [];
    return order.map((k, i) => (focused.has(labelFor(labels, k, 'layer')) ? i : -1)).filter((i) => i >= 0);
  }

  // Horizontal labels when every name fits its bar, else every k-th label
  // at 45 degrees; the bottom margin is as tall as the longest label needs.
  function planLabels(ctx, plotWidth) {
    const n = rows.length;
    const band = n ? plotWidth / n : 0;
    const names = order.map((i) => labelFor(labels, i, 'layer'));
    const widths = names.map((t) => ctx.measureText(t).width);
    if (widths.every((w) => w <= band - 6)) {
      return { rotated: false, stride: 1, names, room: BAR_LABEL_ROOM.min };
    }
    // 16 px along the axis is 11 px between rotated baselines: no overlap.
    return { rotated: true, stride: labelStride(n, band, 16), names, room: slantedLabelRoom(widths) };
  }

  function drawBar(ctx, bar) {
    const cx = bar.x + bar.width / 2;
    if (bar.kind === 'bar') {
      ctx.fillStyle = BAR_COLOR;
      // At least 1px so tiny values are still visibly a bar.
      ctx.fillRect(bar.x, bar.top, bar.width, Math.max(1, bar.bottom - bar.top));
      return;
    }
    if (bar.kind === 'nonpositive') {
      ctx.strokeStyle = '#757575';
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(cx, layout.baseline - 5, 3.5, 0, 2 * Math.PI);
      ctx.stroke();
      return;
    }
    // Non-finite: a pale red column so it is seen at any zoom, a red
    // triangle (up for +Inf, down for -Inf, a diamond for NaN) and a label.
    ctx.fillStyle = 'rgba(211, 47, 47, 0.12)';
    ctx.fillRect(bar.x, box.y, bar.width, box.height);
    const s = Math.max(3, Math.min(6, bar.width / 2));
    const y = bar.value === -Infinity ? box.y + box.height - s - 2 : box.y + s + 12;
    ctx.fillStyle = NONFINITE_COLOR;
    fillMarker(ctx, bar.value === Infinity ? 'up' : bar.value === -Infinity ? 'down' : 'diamond', cx, y, s);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.font = `bold ${CANVAS_FONT}`;
    ctx.fillText(formatValue(bar.value), cx, y - s - 1);
    ctx.font = CANVAS_FONT;
  }

  function drawLabels(ctx, plan) {
    // Non-finite layers are named in bold red, like their marker.
    const flagged = (i) => !Number.isFinite(rows[i][0]);
    if (plan.rotated) {
      drawSlantedLabels(ctx, {
        box, band: layout.band, names: plan.names, stride: plan.stride, room: plan.room, flagged,
      });
      return;
    }
    const top = box.y + box.height + 6;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    plan.names.forEach((name, i) => {
      styleLabel(ctx, flagged(i));
      ctx.fillText(name, box.x + (i + 0.5) * layout.band, top);
    });
    ctx.font = CANVAS_FONT;
  }

  function tooltipLines(i) {
    const row = rows[i];
    const lines = [labelFor(labels, order[i], 'layer')];
    const names = statNames.length ? statNames : ['value'];
    row.forEach((v, k) => {
      const cls = Number.isFinite(v) ? '' : 'is-nonfinite';
      lines.push([names[k] ?? `stat ${k}`, formatValue(v), cls]);
    });
    if (toggle.checked && Number.isFinite(row[0]) && row[0] <= 0) lines.push(['note', 'not drawn on a log scale (≤ 0)']);
    return lines;
  }

  const hover = trackHover(canvas, tooltip, {
    hitAt: (event) => {
      if (!layout || !box) return undefined;
      return event.offsetY >= box.y ? barHit(box, rows.length, event.offsetX) : -1;
    },
    lines: tooltipLines,
    redraw: draw,
  });

  return {
    update(response) {
      data = response.values.map((v) => (Array.isArray(v) ? v : [v]));
      labels = response.labels || [];
      statNames = response.stat_names || [];
      hover.clear();
      arrange();
      updateLegend();
      draw();
    },
    redraw: draw,
    /**
     * Outlines the bars of `labels` (a clicked finding); `log` switches to
     * the log scale, where layers orders of magnitude apart are all seen.
     * @returns {string[]} the labels that are bars of this chart
     */
    focus({ labels: names = [], log = false } = {}) {
      focused = new Set(names);
      if (log && focused.size) toggle.checked = true;
      draw();
      const present = new Set(data.map((_, k) => labelFor(labels, k, 'layer')));
      return names.filter((name) => present.has(name));
    },
    exportParts: () => ({
      canvases: barRows && useHorizontalBars(rows.length) ? barRows.exportCanvases() : [{ canvas }],
      legend: legend.exportPart(),
      notes: [toggle.checked ? 'log scale' : '', sort.value !== 'model' ? `sorted: ${SORT_MODES[sort.value]}` : '']
        .filter(Boolean),
    }),
  };
}

/**
 * A filled marker of half-size `s` centred on (cx, y), in the fill style
 * set: a triangle pointing up or down, or a diamond.
 * @param {CanvasRenderingContext2D} ctx
 * @param {'up'|'down'|'diamond'} shape
 * @param {number} cx
 * @param {number} y
 * @param {number} s
 */
export function fillMarker(ctx, shape, cx, y, s) {
  ctx.beginPath();
  if (shape === 'up') {
    ctx.moveTo(cx, y - s);
    ctx.lineTo(cx + s, y + s);
    ctx.lineTo(cx - s, y + s);
  } else if (shape === 'down') {
    ctx.moveTo(cx, y + s);
    ctx.lineTo(cx + s, y - s);
    ctx.lineTo(cx - s, y - s);
  } else {
    ctx.moveTo(cx, y - s);
    ctx.lineTo(cx + s, y);
    ctx.lineTo(cx, y + s);
    ctx.lineTo(cx - s, y);
  }
  ctx.closePath();
  ctx.fill();
}
