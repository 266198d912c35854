/**
 * Bars as horizontal rows, for bars tags with many layers (hbars.js has the
 * geometry): the value axis on top, then a box that scrolls vertically with
 * one row per layer, its name on the left (cut in the middle when long,
 * whole on hover) and its bar. Only the rows in view are drawn: the canvas
 * is the height of the box and sticks to it while the rows scroll past, so
 * hundreds of layers cost no more than a screenful.
 *
 * DOM hooks: `.bars-axis-canvas`, `.bars-scroll` (the scrolling box),
 * `.bars-rows-canvas`, `.bars-rows-note`.
 */

import { formatValue, NONFINITE_COLOR } from '../charts.js';
import { CANVAS_FONT, el, fitText, setupCanvas, trackHover } from '../dom.js';
import {
  HBARS, horizontalBarLayout, labelColumnWidth, rowAt, rowLabelBox, visibleRows,
} from '../hbars.js';
import { FOCUS_COLOR, styleLabel } from './axes.js';

const BAR_COLOR = '#1976d2';

/**
 * @param {{show: Function, hide: Function}} tooltip the card's tooltip
 * @param {function(number): Array} lines tooltip lines of the row at a
 *   display position
 * @returns {{element: HTMLElement, draw: function(Object): void,
 *   exportCanvases: function(): Object[]}}
 */
export function createBarRows(tooltip, lines) {
  const axisCanvas = el('canvas', { class: 'chart-canvas bars-axis-canvas', 'aria-hidden': 'true' });
  const canvas = el('canvas', { class: 'chart-canvas bars-canvas bars-rows-canvas', 'aria-label': 'bar chart, one row per layer' });
  const space = el('div', { class: 'bars-scroll-space' }, [canvas]);
  const scroller = el('div', { class: 'bars-scroll', tabindex: '0', 'aria-label': 'layers (scrolls)' }, [space]);
  // Overlay scrollbars are invisible until used: say that the box scrolls.
  const note = el('div', { class: 'view-note bars-rows-note' });
  const element = el('div', { class: 'bars-rows' }, [note, axisCanvas, scroller]);

  let spec = null; // {values, names, flagged, marked, log}
  let layout = null;
  let labelW = 0;
  let frame = 0;

  scroller.addEventListener('scroll', () => {
    // One draw per frame however fast the wheel turns.
    if (!frame) {
      frame = requestAnimationFrame(() => {
        frame = 0;
        drawRows();
      });
    }
  });

  function geometry(ctx, width) {
    ctx.font = CANVAS_FONT;
    labelW = labelColumnWidth(spec.names.map((t) => ctx.measureText(t).width), width);
    const plot = { x: labelW, width: Math.max(20, width - labelW - HBARS.right) };
    layout = horizontalBarLayout(spec.values, plot, spec.log ? 'log' : 'linear');
  }

  function drawAxis() {
    const { ctx, width } = setupCanvas(axisCanvas, HBARS.axisHeight);
    geometry(ctx, width);
    ctx.font = CANVAS_FONT;
    ctx.fillStyle = '#757575';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    for (const t of layout.ticks) {
      const x = layout.toX(t);
      if (x < labelW - 1 || x > width) continue;
      ctx.fillText(formatValue(t), x, HBARS.axisHeight - 4);
    }
  }

  function drawRows() {
    if (!spec || !layout) return;
    const n = spec.values.length;
    const height = Math.min(HBARS.viewHeight, Math.max(HBARS.rowHeight, layout.height));
    const { ctx, width } = setupCanvas(canvas, height);
    const top = scroller.scrollTop;
    const { first, last } = visibleRows(top, height, n);
    const y0 = -top;
    // Grid lines behind the bars, at the axis ticks.
    ctx.strokeStyle = '#eeeeee';
    ctx.lineWidth = 1;
    for (const t of layout.ticks) {
      const x = Math.round(layout.toX(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, height);
      ctx.stroke();
    }
    const hover = rowHover.current;
    const marked = new Set(spec.marked || []);
    for (let i = first; i <= last; i++) {
      const bar = layout.bars[i];
      const rowTop = y0 + i * HBARS.rowHeight;
      if (i === hover) {
        ctx.fillStyle = 'rgba(0, 0, 0, 0.06)';
        ctx.fillRect(0, rowTop, width, HBARS.rowHeight);
      }
      if (marked.has(i)) {
        ctx.fillStyle = 'rgba(245, 124, 0, 0.14)';
        ctx.fillRect(labelW, rowTop, width - labelW, HBARS.rowHeight);
      }
      drawBar(ctx, bar, y0, width);
      if (marked.has(i)) {
        ctx.strokeStyle = FOCUS_COLOR;
        ctx.lineWidth = 2;
        ctx.strokeRect(labelW - 1, rowTop + 1, width - labelW, HBARS.rowHeight - 2);
      }
      styleLabel(ctx, spec.flagged(i));
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      ctx.fillText(fitText(ctx, spec.names[i], labelW - 8), labelW - 6, y0 + rowLabelBox(i).middle);
    }
    ctx.font = CANVAS_FONT;
    ctx.strokeStyle = '#9e9e9e';
    ctx.lineWidth = 1;
    const base = Math.round(layout.baseline) + 0.5;
    ctx.beginPath();
    ctx.moveTo(base, 0);
    ctx.lineTo(base, height);
    ctx.stroke();
  }

  function drawBar(ctx, bar, y0, width) {
    const top = y0 + bar.top;
    if (bar.kind === 'bar') {
      ctx.fillStyle = BAR_COLOR;
      // At least 1px so tiny values are still visibly a bar.
      ctx.fillRect(bar.left, top, Math.max(1, bar.right - bar.left), bar.height);
      return;
    }
    if (bar.kind === 'nonpositive') {
      ctx.strokeStyle = '#757575';
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(layout.baseline + 5, top + bar.height / 2, 3.5, 0, 2 * Math.PI);
      ctx.stroke();
      return;
    }
    // Non-finite: a pale red row and the value in bold red at the right.
    ctx.fillStyle = 'rgba(211, 47, 47, 0.12)';
    ctx.fillRect(bar.left, top, bar.right - bar.left, bar.height);
    ctx.fillStyle = NONFINITE_COLOR;
    ctx.font = `bold ${CANVAS_FONT}`;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    ctx.fillText(formatValue(bar.value), Math.min(bar.right + 4, width - 30), top + bar.height / 2);
    ctx.font = CANVAS_FONT;
  }

  const rowHover = trackHover(canvas, tooltip, {
    hitAt: (event) => (layout ? rowAt(event.offsetY + scroller.scrollTop, spec.values.length) : undefined),
    lines,
    redraw: drawRows,
  });

  return {
    element,
    /**
     * @param {{values: number[], names: string[], flagged: function(number): boolean,
     *   marked?: number[], log: boolean}} next rows in display order
     */
    draw(next) {
      spec = next;
      const n = spec.values.length;
      note.textContent = `${n} layers · scroll for more, hover for whole names`;
      space.style.height = `${spec.values.length * HBARS.rowHeight}px`;
      drawAxis();
      drawRows();
    },
    /** The PNG export shows every row: drawn whole into a detached canvas. */
    exportCanvases() {
      if (!spec || !layout) return [];
      const full = document.createElement('canvas');
      const scale = Math.max(2, window.devicePixelRatio || 1);
      const width = canvas.clientWidth || 360;
      full.width = Math.round(width * scale);
      full.height = Math.round(layout.height * scale);
      const ctx = full.getContext('2d');
      ctx.scale(scale, scale);
      ctx.font = CANVAS_FONT;
      for (let i = 0; i < spec.values.length; i++) {
        drawBar(ctx, layout.bars[i], 0, width);
        styleLabel(ctx, spec.flagged(i));
        ctx.textAlign = 'right';
        ctx.textBaseline = 'middle';
        ctx.fillText(fitText(ctx, spec.names[i], labelW - 8), labelW - 6, rowLabelBox(i).middle);
      }
      return [{ canvas: axisCanvas }, { canvas: full }];
    },
  };
}
