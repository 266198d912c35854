/**
 * Axis pieces the canvas charts share: horizontal grid lines labelled with
 * their values, the bars' baseline and hover band, and label styles and
 * slanted labels under the bars.
 */

import { formatValue, NONFINITE_COLOR } from '../charts.js';
import { CANVAS_FONT, fitText } from '../dom.js';

/** Colour of axis labels (names of rows, columns, bars). */
export const LABEL_COLOR = '#424242';
/** Outline of what a clicked finding points at (a bar, a row). */
export const FOCUS_COLOR = '#e65100';

/**
 * Horizontal grid lines across `box`, each with its value left of the plot.
 * @param {CanvasRenderingContext2D} ctx
 * @param {{x: number, y: number, width: number, height: number}} box the plot
 * @param {number[]} ticks values to mark
 * @param {function(number): number} toY value -> y (CSS px)
 * @param {{label?: function(number): string, color?: string, slack?: number}} [options]
 *   label: tick text (formatValue); color: line colour; slack: px a line may
 *   lie outside the box and still be drawn (1)
 */
export function drawValueGrid(ctx, box, ticks, toY, options = {}) {
  const { label = formatValue, color = '#eeeeee', slack = 1 } = options;
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const t of ticks) {
    const y = Math.round(toY(t)) + 0.5;
    if (y < box.y - slack || y > box.y + box.height + slack) continue;
    ctx.strokeStyle = color;
    strokeAcross(ctx, box, y);
    ctx.fillStyle = '#757575';
    ctx.fillText(label(t), box.x - 4, y);
  }
}

/**
 * The value grid of a bar layout (barLayout / groupedBarLayout) and its
 * baseline (zero, or the bottom of a log scale).
 * @param {CanvasRenderingContext2D} ctx
 * @param {{x: number, y: number, width: number, height: number}} box
 * @param {{ticks: number[], toY: function(number): number, baseline: number}} layout
 */
export function drawBarAxis(ctx, box, layout) {
  drawValueGrid(ctx, box, layout.ticks, layout.toY);
  ctx.strokeStyle = '#9e9e9e';
  strokeAcross(ctx, box, Math.round(layout.baseline) + 0.5);
}

// A horizontal line across the plot at y.
function strokeAcross(ctx, box, y) {
  ctx.beginPath();
  ctx.moveTo(box.x, y);
  ctx.lineTo(box.x + box.width, y);
  ctx.stroke();
}

/**
 * The grey band behind the hovered bar (or group of bars); none when
 * `index` < 0.
 */
export function drawHoverBand(ctx, box, band, index) {
  if (index < 0) return;
  ctx.fillStyle = 'rgba(0, 0, 0, 0.06)';
  ctx.fillRect(box.x + index * band, box.y, band, box.height);
}

/**
 * Colour and weight of an axis label: a flagged one (its values are
 * NaN/Inf) is bold red, like its marker.
 * @param {CanvasRenderingContext2D} ctx
 * @param {boolean} flagged
 */
export function styleLabel(ctx, flagged) {
  ctx.fillStyle = flagged ? NONFINITE_COLOR : LABEL_COLOR;
  ctx.font = flagged ? `bold ${CANVAS_FONT}` : CANVAS_FONT;
}

/**
 * Every `stride`-th bar label, running down-left at 45 degrees so long
 * names fit without overlap. Each is cut to the room below the plot and
 * left of its bar, so the first labels are not clipped by the canvas edge.
 * @param {CanvasRenderingContext2D} ctx
 * @param {{box: Object, band: number, names: string[], stride: number,
 *   room: number, flagged: function(number): boolean}} spec band: px per
 *   bar (group); room: px below the plot (slantedLabelRoom)
 */
export function drawSlantedLabels(ctx, { box, band, names, stride, room, flagged }) {
  const top = box.y + box.height + 6;
  ctx.textBaseline = 'middle';
  for (let i = 0; i < names.length; i += stride) {
    const x = box.x + (i + 0.5) * band;
    styleLabel(ctx, flagged(i));
    const name = fitText(ctx, names[i], Math.min(room - 10, x - 2) / Math.SQRT1_2);
    ctx.save();
    ctx.translate(x, top);
    ctx.rotate(-Math.PI / 4);
    ctx.textAlign = 'right';
    ctx.fillText(name, 0, 0);
    ctx.restore();
  }
  ctx.font = CANVAS_FONT;
}
