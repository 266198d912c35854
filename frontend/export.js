/**
 * Card downloads: the current view as a PNG (its canvases, titles and
 * legends drawn into one image, canvas.toBlob) and the data of every step
 * as CSV (the plugin's /csv route; compare cards join their runs' files).
 *
 * A card provides `exportParts()` -> {title, subtitle, fileParts,
 * canvases: [{canvas, caption?}], legend?: [{color, label, flagged?}],
 * colorbars?: [{colors, min, max, title, special}], notes?: string[],
 * warnings?: string[] (drawn red)}
 * and `csvSources()` -> [{run, tag}].
 */

import { NONFINITE_COLOR } from './charts.js';
import { csvUrl, fileName, joinCsv } from './csv.js';
import { CANVAS_FONT, withCanvasScale } from './dom.js';
import { fetchText } from './model.js';

const PAD = 14;
const TITLE_FONT = 'bold 14px Roboto, "Helvetica Neue", Arial, sans-serif';
const TEXT_FONT = '12px Roboto, "Helvetica Neue", Arial, sans-serif';

/**
 * Saves `blob` as `name` through a temporary <a download> link.
 * @param {Blob} blob
 * @param {string} name
 */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has its own reference by now; free ours a little later.
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/**
 * Downloads the card's CSV: every step of every run it shows.
 * @param {{csvSources: function(): {run: string, tag: string}[], exportParts: Function}} card
 */
export async function exportCsv(card) {
  const sources = card.csvSources();
  const texts = await Promise.all(sources.map(({ run, tag }) => fetchText(csvUrl(run, tag))));
  const parts = card.exportParts();
  download(new Blob([joinCsv(texts)], { type: 'text/csv' }), fileName(parts.fileParts, 'csv'));
}

/**
 * Downloads the card's current view as a PNG.
 * @param {{exportParts: Function}} card
 */
export async function exportPng(card) {
  const scale = Math.max(2, window.devicePixelRatio || 1);
  // Redraw at the export scale so the image is sharp, then back for the screen.
  let parts;
  let canvas;
  try {
    withCanvasScale(scale, () => card.redraw());
    parts = card.exportParts();
    canvas = composeImage(parts, scale);
  } finally {
    card.redraw();
  }
  const blob = await new Promise((resolve, reject) => {
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('the browser could not encode the PNG'))), 'image/png');
  });
  download(blob, fileName([...parts.fileParts, parts.step !== undefined ? `step${parts.step}` : null], 'png'));
}

/**
 * Draws a card's parts into one canvas, `scale` device pixels per CSS pixel.
 * @param {Object} parts see the module comment
 * @param {number} [scale=2]
 * @returns {HTMLCanvasElement}
 */
export function composeImage(parts, scale = 2) {
  const images = parts.canvases.filter(({ canvas }) => canvas && canvas.width && canvas.height);
  const cssSize = ({ canvas }) => ({
    w: canvas.clientWidth || canvas.width / scale,
    h: canvas.clientHeight || canvas.height / scale,
  });
  const width = Math.max(360, ...images.map((p) => cssSize(p).w)) + 2 * PAD;
  const measure = document.createElement('canvas').getContext('2d');
  const legendRows = layoutLegend(measure, parts.legend || [], width - 2 * PAD);
  const colorbars = (parts.colorbars || []).filter(Boolean);
  let height = PAD + 18 + 16 + 8;
  for (const p of images) height += (p.caption ? 16 : 0) + cssSize(p).h + 8;
  const notes = [...(parts.warnings || []).map((t) => [t, true]), ...(parts.notes || []).map((t) => [t, false])];
  height += legendRows.length * 18 + colorbars.length * 44 + notes.length * 16 + PAD;

  const out = document.createElement('canvas');
  out.width = Math.round(width * scale);
  out.height = Math.round(height * scale);
  const ctx = out.getContext('2d');
  ctx.scale(scale, scale);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, width, height);
  ctx.textBaseline = 'top';
  let y = PAD;
  ctx.fillStyle = '#212121';
  ctx.font = TITLE_FONT;
  ctx.fillText(parts.title, PAD, y, width - 2 * PAD);
  y += 18;
  ctx.font = TEXT_FONT;
  ctx.fillStyle = '#616161';
  ctx.fillText(parts.subtitle || '', PAD, y, width - 2 * PAD);
  y += 24;
  for (const p of images) {
    const { w, h } = cssSize(p);
    if (p.caption) {
      ctx.fillStyle = '#424242';
      ctx.font = TEXT_FONT;
      ctx.fillText(p.caption, PAD, y, width - 2 * PAD);
      y += 16;
    }
    ctx.drawImage(p.canvas, PAD, y, w, h);
    y += h + 8;
  }
  y = drawLegend(ctx, legendRows, y);
  for (const bar of colorbars) y = drawColorbar(ctx, bar, y, width);
  ctx.font = TEXT_FONT;
  for (const [note, warning] of notes) {
    ctx.fillStyle = warning ? NONFINITE_COLOR : '#616161';
    ctx.fillText(note, PAD, y, width - 2 * PAD);
    y += 16;
  }
  return out;
}

// Legend entries flow left to right and wrap: [[{entry, x}], ...] rows.
function layoutLegend(ctx, legend, maxWidth) {
  ctx.font = CANVAS_FONT;
  const rows = [];
  let row = [];
  let x = 0;
  for (const entry of legend) {
    const w = 16 + Math.min(200, ctx.measureText(entry.label).width) + 14;
    if (row.length && x + w > maxWidth) {
      rows.push(row);
      row = [];
      x = 0;
    }
    row.push({ entry, x });
    x += w;
  }
  if (row.length) rows.push(row);
  return rows;
}

function drawLegend(ctx, rows, y0) {
  let y = y0;
  ctx.font = CANVAS_FONT;
  for (const row of rows) {
    for (const { entry, x } of row) {
      ctx.fillStyle = entry.color;
      ctx.fillRect(PAD + x, y + 2, 10, 10);
      ctx.strokeStyle = '#9e9e9e';
      ctx.lineWidth = 0.5;
      ctx.strokeRect(PAD + x, y + 2, 10, 10);
      ctx.fillStyle = entry.flagged ? NONFINITE_COLOR : '#424242';
      ctx.fillText(entry.label, PAD + x + 16, y + 1, 200);
    }
    y += 18;
  }
  return y;
}

function drawColorbar(ctx, bar, y0, width) {
  const y = y0 + 4;
  ctx.font = CANVAS_FONT;
  ctx.fillStyle = '#424242';
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'left';
  const minW = ctx.measureText(bar.min).width;
  const maxW = ctx.measureText(bar.max).width;
  ctx.fillText(bar.min, PAD, y + 5);
  const x0 = PAD + minW + 6;
  const x1 = width - PAD - maxW - 6;
  const grad = ctx.createLinearGradient(x0, 0, x1, 0);
  bar.colors.forEach((c, i) => grad.addColorStop(i / Math.max(1, bar.colors.length - 1), c));
  ctx.fillStyle = grad;
  ctx.fillRect(x0, y, x1 - x0, 10);
  ctx.fillStyle = '#424242';
  ctx.fillText(bar.max, x1 + 6, y + 5);
  ctx.textBaseline = 'top';
  let x = PAD;
  ctx.fillStyle = '#616161';
  if (bar.title) {
    ctx.fillText(bar.title, x, y + 16);
    x += ctx.measureText(bar.title).width + 14;
  }
  for (const s of bar.special || []) {
    ctx.fillStyle = s.color;
    ctx.fillRect(x, y + 17, 10, 10);
    ctx.strokeStyle = '#9e9e9e';
    ctx.strokeRect(x, y + 17, 10, 10);
    ctx.fillStyle = '#616161';
    ctx.fillText(s.label, x + 14, y + 16);
    x += ctx.measureText(s.label).width + 28;
  }
  return y0 + 44;
}
