/**
 * A labelled colour matrix on a canvas, shared by the over-time (layers x
 * steps), confusion (true x predicted) and compare (run heatmaps) views:
 * one pixel per cell scaled up without smoothing, row and column labels,
 * flagged rows in red, a hover outline, optional numbers in the cells.
 *
 * The caller owns colours and tooltips: `colorOf(v, r, c)` gives each
 * cell's [r, g, b]; `onHover(hit, event)` reports the cell under the mouse.
 */

import { heatmapLayout, labelStride, NONFINITE_COLOR, truncateMiddle } from '../charts.js';
import { textColorOn } from '../colors.js';
import { CANVAS_FONT, el, setupCanvas } from '../dom.js';
import { FOCUS_COLOR, LABEL_COLOR, styleLabel } from './axes.js';

const AXIS_TITLE_COLOR = '#757575';

/**
 * @param {Object} options
 * @param {string} options.className extra canvas class
 * @param {string} options.ariaLabel
 * @param {'aspect'|'square'|'rows'} [options.shape='aspect'] cell shape:
 *   at most 4:1 / square / full width with rows of a readable height
 * @param {number} [options.height=240] largest grid height (CSS px)
 * @param {'all'|'ends'|'ticks'} [options.rowLabels='ends']
 * @param {'all'|'ends'|'ticks'} [options.colLabels='ends']
 * @param {number} [options.left=30] room for row labels
 * @param {string} [options.xTitle] axis title under the column labels
 * @param {string} [options.yTitle] axis title left of the row labels
 * @param {boolean} [options.frameNonFinite] red frame around non-finite cells
 * @returns {Object} see the returned methods
 */
export function createMatrixCanvas(options) {
  const opts = { shape: 'aspect', height: 240, rowLabels: 'ends', colLabels: 'ends', left: 30, ...options };
  const canvas = el('canvas', { class: `chart-canvas matrix-canvas ${opts.className || ''}`, 'aria-label': opts.ariaLabel });
  let grid = null;
  let colorOf = () => [0, 0, 0];
  let rowName = (i) => String(i);
  let colName = (j) => String(j);
  let rowFlag = () => false;
  let colFlag = () => false;
  let rowMark = () => false;
  let colMark = () => false;
  let cellText = null;
  let image = null;
  let layout = null;
  let hover = null;
  let hoverFn = null;

  // Column labels: horizontal when they fit, else rotated (every k-th).
  function planCols(ctx, cols, cellW) {
    const idx = pickIndices(opts.colLabels, cols);
    const names = idx.map((j) => colName(j));
    const widths = names.map((t) => ctx.measureText(t).width);
    const room = opts.colLabels === 'all' ? cellW : Infinity;
    const horizontal = widths.every((w) => w <= room - 4) && !overlaps(idx, widths, cellW);
    if (horizontal) return { idx, names, rotated: false, height: (opts.xTitle ? 30 : 16) };
    const longest = Math.min(90, Math.max(0, ...widths));
    const stride = labelStride(idx.length, cellW * (cols / Math.max(1, idx.length)), 13);
    return {
      idx: idx.filter((_, k) => k % stride === 0),
      names: names.filter((_, k) => k % stride === 0),
      rotated: true,
      height: longest * Math.SQRT1_2 + 14 + (opts.xTitle ? 14 : 0),
    };
  }

  function draw() {
    if (!grid) return;
    const rows = grid.length;
    const cols = rows ? grid[0].length : 0;
    const width = canvas.clientWidth || 360;
    const probe = canvas.getContext('2d');
    probe.font = CANVAS_FONT;
    const left = opts.left + (opts.yTitle ? 14 : 0);
    const plotW = Math.max(10, width - left - 8);
    // Cell width first (the column plan depends on it), then the height.
    let cellW = plotW / Math.max(1, cols);
    if (opts.shape === 'square') cellW = Math.min(cellW, opts.height / Math.max(1, rows));
    const colPlan = planCols(probe, cols, cellW);
    const box = { x: left, y: 4, width: plotW, height: opts.height };
    if (opts.shape === 'rows') {
      const rowH = Math.max(6, Math.min(22, opts.height / Math.max(1, rows)));
      layout = { x: left, y: 4, width: plotW, height: rowH * rows, cellW: plotW / Math.max(1, cols), cellH: rowH, rows, cols };
    } else {
      layout = heatmapLayout(rows, cols, box, opts.shape === 'square' ? 1 : 4);
      // Flat grids sit at the top instead of the middle of the box.
      layout.y = box.y;
      if (opts.shape === 'square') layout.x = left;
    }
    const { ctx } = setupCanvas(canvas, Math.ceil(layout.y + layout.height + colPlan.height));
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(image, layout.x, layout.y, layout.width, layout.height);
    if (opts.frameNonFinite) drawNonFiniteFrames(ctx);
    drawCellText(ctx);
    ctx.strokeStyle = '#bdbdbd';
    ctx.lineWidth = 1;
    ctx.strokeRect(layout.x - 0.5, layout.y - 0.5, layout.width + 1, layout.height + 1);
    drawMarks(ctx, rows, cols);
    ctx.font = CANVAS_FONT;
    drawRowLabels(ctx, rows);
    drawColLabels(ctx, colPlan);
    if (hover) {
      ctx.strokeStyle = '#212121';
      ctx.lineWidth = 2;
      ctx.strokeRect(layout.x + hover.col * layout.cellW, layout.y + hover.row * layout.cellH, layout.cellW, layout.cellH);
    }
  }

  // Non-finite cells get a red frame when the map itself may use red
  // (diverging maps draw them black).
  function drawNonFiniteFrames(ctx) {
    if (layout.cellW < 4 || layout.cellH < 4) return;
    ctx.strokeStyle = NONFINITE_COLOR;
    ctx.lineWidth = 1.5;
    grid.forEach((row, r) => row.forEach((v, c) => {
      if (typeof v === 'number' && !Number.isFinite(v)) {
        ctx.strokeRect(layout.x + c * layout.cellW + 0.75, layout.y + r * layout.cellH + 0.75,
          layout.cellW - 1.5, layout.cellH - 1.5);
      }
    }));
  }

  // Rows and columns a clicked finding points at: outlined across the grid.
  function drawMarks(ctx, rows, cols) {
    ctx.strokeStyle = FOCUS_COLOR;
    ctx.lineWidth = 2;
    for (let r = 0; r < rows; r++) {
      if (rowMark(r)) ctx.strokeRect(layout.x - 1, layout.y + r * layout.cellH, layout.width + 2, layout.cellH);
    }
    for (let c = 0; c < cols; c++) {
      if (colMark(c)) ctx.strokeRect(layout.x + c * layout.cellW, layout.y - 1, layout.cellW, layout.height + 2);
    }
  }

  function drawCellText(ctx) {
    if (!cellText || layout.cellW < 22 || layout.cellH < 13) return;
    ctx.font = CANVAS_FONT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    grid.forEach((row, r) => row.forEach((v, c) => {
      const text = cellText(v, r, c);
      if (!text) return;
      const x = layout.x + (c + 0.5) * layout.cellW;
      const y = layout.y + (r + 0.5) * layout.cellH;
      ctx.fillStyle = textColorOn(colorOf(v, r, c));
      ctx.fillText(truncateMiddle(text, Math.max(2, Math.floor(layout.cellW / 6.5))), x, y);
    }));
  }

  function drawRowLabels(ctx, rows) {
    const idx = pickIndices(opts.rowLabels, rows);
    const stride = labelStride(idx.length, layout.cellH * (rows / Math.max(1, idx.length)), 12);
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const maxChars = Math.max(3, Math.floor((opts.left - 6) / 6));
    idx.forEach((i, k) => {
      if (k % stride) return;
      styleLabel(ctx, rowFlag(i));
      if (rowMark(i)) ctx.fillStyle = FOCUS_COLOR;
      ctx.fillText(truncateMiddle(rowName(i), maxChars), layout.x - 4, layout.y + (i + 0.5) * layout.cellH);
    });
    ctx.font = CANVAS_FONT;
    if (opts.yTitle) {
      ctx.save();
      ctx.translate(9, layout.y + layout.height / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = 'center';
      ctx.fillStyle = AXIS_TITLE_COLOR;
      ctx.fillText(opts.yTitle, 0, 0);
      ctx.restore();
    }
  }

  function drawColLabels(ctx, plan) {
    const top = layout.y + layout.height + 4;
    plan.idx.forEach((j, k) => {
      const x = layout.x + (j + 0.5) * layout.cellW;
      const flagged = colFlag(j);
      ctx.fillStyle = flagged ? NONFINITE_COLOR : colMark(j) ? FOCUS_COLOR : LABEL_COLOR;
      if (!plan.rotated) {
        ctx.textAlign = 'center';
        ctx.textBaseline = 'top';
        ctx.fillText(plan.names[k], x, top);
        return;
      }
      ctx.save();
      ctx.translate(x, top + 2);
      ctx.rotate(-Math.PI / 4);
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      ctx.fillText(truncateMiddle(plan.names[k], 14), 0, 0);
      ctx.restore();
    });
    if (opts.xTitle) {
      ctx.fillStyle = AXIS_TITLE_COLOR;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'bottom';
      ctx.fillText(opts.xTitle, layout.x + layout.width / 2, layout.y + layout.height + plan.height);
    }
  }

  function hitAt(x, y) {
    if (!layout || !layout.cellW || !layout.cellH) return null;
    const col = Math.floor((x - layout.x) / layout.cellW);
    const row = Math.floor((y - layout.y) / layout.cellH);
    if (!(row >= 0 && row < layout.rows && col >= 0 && col < layout.cols)) return null;
    return { row, col };
  }

  canvas.addEventListener('mousemove', (event) => {
    const hit = hitAt(event.offsetX, event.offsetY);
    const same = hit && hover && hit.row === hover.row && hit.col === hover.col;
    if (!same && (hit || hover)) {
      hover = hit;
      draw();
    }
    if (hoverFn) hoverFn(hit, event);
  });
  canvas.addEventListener('mouseleave', (event) => {
    hover = null;
    draw();
    if (hoverFn) hoverFn(null, event);
  });

  return {
    canvas,
    /**
     * Sets the grid and how to draw it, then draws.
     * @param {Array<Array<number|null>>} values rows of cells
     * @param {Object} how colorOf, rowName, colName, rowFlag, colFlag,
     *   rowMark, colMark (outlined: what a clicked finding names), cellText
     */
    set(values, how) {
      grid = values;
      ({ colorOf } = how);
      rowName = how.rowName || ((i) => String(i));
      colName = how.colName || ((j) => String(j));
      rowFlag = how.rowFlag || (() => false);
      colFlag = how.colFlag || (() => false);
      rowMark = how.rowMark || (() => false);
      colMark = how.colMark || (() => false);
      cellText = how.cellText || null;
      hover = null;
      image = gridImage(grid, colorOf);
      draw();
    },
    draw,
    hitAt,
    onHover(fn) {
      hoverFn = fn;
    },
  };
}

/**
 * One pixel per cell in the cell's colour, to be drawn scaled up without
 * smoothing (cell edges stay crisp and seam-free).
 * @param {Array<Array<*>>} grid rows of cells
 * @param {function(*, number, number): number[]} colorOf [r, g, b] of (value, row, col)
 * @returns {HTMLCanvasElement}
 */
export function gridImage(grid, colorOf) {
  const rows = grid.length;
  const cols = rows ? grid[0].length : 0;
  const image = document.createElement('canvas');
  image.width = Math.max(1, cols);
  image.height = Math.max(1, rows);
  const ictx = image.getContext('2d');
  const pixels = ictx.createImageData(image.width, image.height);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const [R, G, B] = colorOf(grid[r][c], r, c);
      const o = (r * cols + c) * 4;
      pixels.data[o] = R;
      pixels.data[o + 1] = G;
      pixels.data[o + 2] = B;
      pixels.data[o + 3] = 255;
    }
  }
  ictx.putImageData(pixels, 0, 0);
  return image;
}

// Which indices get a label: all, the two ends, or ~6 evenly spaced ticks.
function pickIndices(mode, n) {
  if (n <= 0) return [];
  if (mode === 'all') return Array.from({ length: n }, (_, i) => i);
  if (mode === 'ends') return n > 1 ? [0, n - 1] : [0];
  const k = Math.min(n, 6);
  const out = new Set();
  for (let i = 0; i < k; i++) out.add(Math.round((i * (n - 1)) / Math.max(1, k - 1)));
  return [...out];
}

// Would horizontal labels centred on their cells overlap each other?
function overlaps(idx, widths, cellW) {
  for (let k = 1; k < idx.length; k++) {
    const gap = (idx[k] - idx[k - 1]) * cellW;
    if ((widths[k] + widths[k - 1]) / 2 + 4 > gap) return true;
  }
  return false;
}
