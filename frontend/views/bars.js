/**
 * Bars view: one bar per layer (column 0 of the values), labelled below the
 * axis, a linear/log toggle, model order or sorted by value, a tooltip with
 * the full layer name, the value and any extra stat columns, and a legend.
 * Non-finite values are a red marker with a NaN/Inf label and a red layer
 * name; on the log scale values <= 0 are a hollow marker.
 *
 * DOM hooks: `.log-toggle`, `.bars-sort` (select: model / desc / asc).
 */

import {
  barHit, barLayout, formatValue, labelFor, labelStride, NONFINITE_COLOR,
} from '../charts.js';
import { CANVAS_FONT, el, fitText, setupCanvas } from '../dom.js';
import { SORT_MODES, sortOrder } from '../stats.js';
import { createSwatchLegend } from './legend.js';

const HEIGHT = 270;
const BAR_COLOR = '#1976d2';
const MARGIN = { left: 46, right: 8, top: 14 };
// Bottom margin bounds: labels shorter than the maximum take less room.
const LABEL_ROOM = { min: 18, max: 84 };

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

  let data = []; // per layer, model order: [value, ...extra stats]
  let rows = []; // per bar on screen, in display order
  let order = []; // rows[i] is data[order[i]]
  let labels = [];
  let statNames = [];
  let layout = null;
  let box = null;
  let hover = -1;

  toggle.addEventListener('change', () => {
    hover = -1;
    draw();
  });
  sort.addEventListener('change', () => {
    hover = -1;
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
    drawGrid(ctx);
    if (hover >= 0) {
      ctx.fillStyle = 'rgba(0, 0, 0, 0.06)';
      ctx.fillRect(box.x + hover * layout.band, box.y, layout.band, box.height);
    }
    for (const bar of layout.bars) drawBar(ctx, bar);
    drawLabels(ctx, labelPlan);
  }

  // Horizontal labels when every name fits its bar, else every k-th label
  // at 45 degrees; the bottom margin is as tall as the longest label needs.
  function planLabels(ctx, plotWidth) {
    const n = rows.length;
    const band = n ? plotWidth / n : 0;
    const names = order.map((i) => labelFor(labels, i, 'layer'));
    const widths = names.map((t) => ctx.measureText(t).width);
    if (widths.every((w) => w <= band - 6)) {
      return { rotated: false, stride: 1, names, room: LABEL_ROOM.min };
    }
    const longest = Math.max(0, ...widths);
    const room = Math.min(LABEL_ROOM.max, Math.max(LABEL_ROOM.min, longest * Math.SQRT1_2 + 12));
    // 16 px along the axis is 11 px between rotated baselines: no overlap.
    return { rotated: true, stride: labelStride(n, band, 16), names, room };
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
    ctx.beginPath();
    const base = Math.round(layout.baseline) + 0.5;
    ctx.moveTo(box.x, base);
    ctx.lineTo(box.x + box.width, base);
    ctx.stroke();
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
    ctx.beginPath();
    if (bar.value === Infinity) {
      ctx.moveTo(cx, y - s);
      ctx.lineTo(cx + s, y + s);
      ctx.lineTo(cx - s, y + s);
    } else if (bar.value === -Infinity) {
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
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.font = `bold ${CANVAS_FONT}`;
    ctx.fillText(formatValue(bar.value), cx, bar.value === -Infinity ? y - s - 1 : y - s - 1);
    ctx.font = CANVAS_FONT;
  }

  function drawLabels(ctx, plan) {
    const n = rows.length;
    const top = box.y + box.height + 6;
    ctx.fillStyle = '#424242';
    // Non-finite layers are named in bold red, like their marker.
    const flag = (i) => {
      const bad = !Number.isFinite(rows[i][0]);
      ctx.fillStyle = bad ? NONFINITE_COLOR : '#424242';
      ctx.font = bad ? `bold ${CANVAS_FONT}` : CANVAS_FONT;
    };
    if (!plan.rotated) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'top';
      plan.names.forEach((name, i) => {
        flag(i);
        ctx.fillText(name, box.x + (i + 0.5) * layout.band, top);
      });
      ctx.font = CANVAS_FONT;
      return;
    }
    ctx.textBaseline = 'middle';
    // Labels run down-left at 45 degrees: long names fit without overlap.
    // Each is cut to the room below the plot and left of its bar, so the
    // first labels are not clipped by the canvas edge.
    for (let i = 0; i < n; i += plan.stride) {
      const x = box.x + (i + 0.5) * layout.band;
      const room = Math.min(plan.room - 10, x - 2) / Math.SQRT1_2;
      flag(i);
      const name = fitText(ctx, plan.names[i], room);
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
    const inside = event.offsetY >= box.y;
    const i = inside ? barHit(box, rows.length, event.offsetX) : -1;
    if (i !== hover) {
      hover = i;
      draw();
    }
    if (i < 0) {
      tooltip.hide();
      return;
    }
    const row = rows[i];
    const lines = [labelFor(labels, order[i], 'layer')];
    const names = statNames.length ? statNames : ['value'];
    row.forEach((v, k) => {
      const cls = Number.isFinite(v) ? '' : 'is-nonfinite';
      lines.push([names[k] ?? `stat ${k}`, formatValue(v), cls]);
    });
    if (layout.bars[i].kind === 'nonpositive') lines.push(['note', 'not drawn on a log scale (≤ 0)']);
    tooltip.show(event, lines);
  });
  canvas.addEventListener('mouseleave', () => {
    hover = -1;
    tooltip.hide();
    draw();
  });

  return {
    update(response) {
      data = response.values.map((v) => (Array.isArray(v) ? v : [v]));
      labels = response.labels || [];
      statNames = response.stat_names || [];
      hover = -1;
      arrange();
      updateLegend();
      draw();
    },
    redraw: draw,
    exportParts: () => ({
      canvases: [{ canvas }],
      legend: legend.exportPart(),
      notes: [toggle.checked ? 'log scale' : '', sort.value !== 'model' ? `sorted: ${SORT_MODES[sort.value]}` : '']
        .filter(Boolean),
    }),
  };
}
