/**
 * Heatmap view: a [rows, cols] grid in a diverging colour map centred on
 * zero, a colour legend with min/max, the original shape, and a tooltip with
 * row, column and value. Non-finite cells are black with a white cross and
 * a red frame.
 */

import {
  describeShape, divergingColor, finiteExtent, formatValue, heatmapHit, heatmapLayout,
  NONFINITE_COLOR, rgbString, symmetricMax,
} from '../charts.js';
import { CANVAS_FONT, el, setupCanvas, trackHover } from '../dom.js';
import { gridImage } from './matrix.js';

const HEIGHT = 250;
// Room for row numbers on the left and column numbers below the grid.
const MARGIN = { left: 30, right: 6, top: 4, bottom: 16 };

/**
 * Mounts a heatmap in `container`.
 * @param {HTMLElement} container the card body
 * @param {{show: Function, hide: Function}} tooltip the card's tooltip
 * @returns {{update: function(Object): void, redraw: function(): void}}
 */
export function createHeatmapView(container, tooltip) {
  const shapeInfo = el('div', { class: 'shape-info' });
  const canvas = el('canvas', { class: 'chart-canvas heatmap-canvas', 'aria-label': 'heatmap' });
  const legendBar = el('div', { class: 'legend-bar' });
  const legendNeg = el('span', { class: 'legend-end' });
  const legendPos = el('span', { class: 'legend-end' });
  const legendMin = el('span', { class: 'legend-min' });
  const legendMax = el('span', { class: 'legend-max' });
  const nonfiniteKey = el('span', { class: 'legend-nonfinite', hidden: true }, [
    el('span', { class: 'swatch swatch-nonfinite' }), 'NaN / Inf',
  ]);
  const stops = [-1, -0.5, 0, 0.5, 1].map((t, i) => `${rgbString(divergingColor(t, 1))} ${i * 25}%`);
  legendBar.style.background = `linear-gradient(to right, ${stops.join(', ')})`;
  container.append(
    shapeInfo,
    canvas,
    el('div', { class: 'heat-legend' }, [legendNeg, legendBar, legendPos]),
    el('div', { class: 'legend-minmax' }, ['min ', legendMin, ' · max ', legendMax, nonfiniteKey]),
  );

  let grid = null; // rows of numbers
  let layout = null;
  let maxAbs = 0;
  let image = null; // one pixel per cell, scaled up when drawn

  function draw() {
    if (!grid) return;
    const rows = grid.length;
    const cols = rows ? grid[0].length : 0;
    const box = {
      x: MARGIN.left,
      y: MARGIN.top,
      width: (canvas.clientWidth || 360) - MARGIN.left - MARGIN.right,
      height: HEIGHT - MARGIN.top - MARGIN.bottom,
    };
    // A flat grid (one row, a few rows) gets a shorter canvas instead of
    // empty space above and below it.
    box.height = heatmapLayout(rows, cols, box).height;
    setupCanvas(canvas, box.height + MARGIN.top + MARGIN.bottom);
    const ctx = canvas.getContext('2d');
    layout = heatmapLayout(rows, cols, box);
    // Nearest-neighbour scaling keeps cell edges crisp and seam-free.
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(image, layout.x, layout.y, layout.width, layout.height);
    drawNonFinite(ctx);
    ctx.strokeStyle = '#bdbdbd';
    ctx.lineWidth = 1;
    ctx.strokeRect(layout.x - 0.5, layout.y - 0.5, layout.width + 1, layout.height + 1);
    drawAxisLabels(ctx, rows, cols);
    const cell = hover.current;
    if (cell) {
      ctx.strokeStyle = '#212121';
      ctx.lineWidth = 2;
      ctx.strokeRect(
        layout.x + cell.col * layout.cellW, layout.y + cell.row * layout.cellH,
        layout.cellW, layout.cellH,
      );
    }
  }

  function drawNonFinite(ctx) {
    const { cellW, cellH } = layout;
    // Black pixels already mark them; a cross makes them stand out even
    // next to dark blue/red cells when the cells are big enough to hold one.
    if (cellW < 4 || cellH < 4) return;
    ctx.strokeStyle = '#ffffff';
    ctx.lineWidth = Math.max(1, Math.min(cellW, cellH) / 8);
    ctx.beginPath();
    grid.forEach((row, r) => row.forEach((v, c) => {
      if (Number.isFinite(v)) return;
      const x = layout.x + c * cellW;
      const y = layout.y + r * cellH;
      const i = Math.min(cellW, cellH) * 0.22;
      ctx.moveTo(x + i, y + i);
      ctx.lineTo(x + cellW - i, y + cellH - i);
      ctx.moveTo(x + cellW - i, y + i);
      ctx.lineTo(x + i, y + cellH - i);
    }));
    ctx.stroke();
    // A red frame flags them like every other view flags non-finite values.
    ctx.strokeStyle = NONFINITE_COLOR;
    ctx.lineWidth = 1.5;
    grid.forEach((row, r) => row.forEach((v, c) => {
      if (!Number.isFinite(v)) ctx.strokeRect(layout.x + c * cellW + 0.75, layout.y + r * cellH + 0.75, cellW - 1.5, cellH - 1.5);
    }));
  }

  function drawAxisLabels(ctx, rows, cols) {
    ctx.fillStyle = '#616161';
    ctx.font = CANVAS_FONT;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'top';
    ctx.fillText('0', layout.x - 4, layout.y);
    if (rows > 1) {
      ctx.textBaseline = 'bottom';
      ctx.fillText(String(rows - 1), layout.x - 4, layout.y + layout.height);
    }
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    ctx.fillText('0', layout.x, layout.y + layout.height + 3);
    if (cols > 1) {
      ctx.textAlign = 'right';
      ctx.fillText(String(cols - 1), layout.x + layout.width, layout.y + layout.height + 3);
    }
  }

  const hover = trackHover(canvas, tooltip, {
    hitAt: (event) => (layout ? heatmapHit(layout, event.offsetX, event.offsetY) : undefined),
    lines: (hit) => {
      const v = grid[hit.row][hit.col];
      return [
        ['row', String(hit.row)],
        ['column', String(hit.col)],
        ['value', formatValue(v), Number.isFinite(v) ? '' : 'is-nonfinite'],
      ];
    },
    redraw: draw,
    none: null,
    same: (a, b) => a && b && a.row === b.row && a.col === b.col,
  });

  return {
    update(data) {
      const values = data.values;
      // A 1-D heatmap is one row.
      grid = values.length && !Array.isArray(values[0]) ? [values] : values;
      maxAbs = symmetricMax(grid);
      const ext = finiteExtent(grid);
      const shape = data.shape && data.shape.length ? data.shape : [grid.length, grid[0]?.length ?? 0];
      shapeInfo.textContent = describeShape(data.original_shape, shape, data.reduction);
      legendNeg.textContent = formatValue(-maxAbs);
      legendPos.textContent = formatValue(maxAbs);
      legendMin.textContent = formatValue(ext.min);
      legendMax.textContent = formatValue(ext.max);
      nonfiniteKey.hidden = ext.count === grid.length * (grid[0]?.length ?? 0);
      image = gridImage(grid, (v) => divergingColor(v, maxAbs));
      hover.clear();
      draw();
    },
    redraw: draw,
    exportParts: () => ({
      canvases: [{ canvas, caption: shapeInfo.textContent }],
      colorbars: [{
        colors: [-1, -0.5, 0, 0.5, 1].map((t) => rgbString(divergingColor(t, 1))),
        min: legendNeg.textContent,
        max: legendPos.textContent,
        title: `min ${legendMin.textContent} · max ${legendMax.textContent}`,
        special: nonfiniteKey.hidden ? [] : [{ color: '#000000', label: 'NaN / Inf (black, white ×)' }],
      }],
    }),
  };
}
