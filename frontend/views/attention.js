/**
 * Attention view: every head of one module as small multiples (queries are
 * rows, keys are columns), one shared viridis scale so heads compare
 * (linear 0..max, or log over the top decades: `.log-toggle`), a colour bar, and a tooltip with head, query and key position (token
 * labels when the writer gave them, the pooling bin otherwise) and the
 * weight. The hovered cell is outlined in its head and, thinner, at the same
 * place in every other head. Non-finite weights are red.
 *
 * DOM hooks: `.attention-canvas` (data-heads once drawn), `.attention-info`.
 */

import {
  attentionHit, attentionLayout, attentionMax, attentionT, describeAttention, describePosition, LOG_DECADES,
} from '../attentiongeom.js';
import { formatValue } from '../charts.js';
import {
  colorStops, NONFINITE_RGB, NONPOSITIVE_RGB, viridisColor,
} from '../colors.js';
import { CANVAS_FONT, el, setupCanvas, trackHover } from '../dom.js';
import { createColorbar } from './legend.js';
import { gridImage } from './matrix.js';

const VIRIDIS_CSS = colorStops(viridisColor);
const PAD = { left: 2, top: 2, bottom: 4 };

/**
 * Mounts an attention view in `container`.
 * @param {HTMLElement} container the card body
 * @param {{show: Function, hide: Function}} tooltip the card's tooltip
 * @returns {{update: function(Object): void, redraw: function(): void, exportParts: function(): Object}}
 */
export function createAttentionView(container, tooltip) {
  const info = el('div', { class: 'shape-info attention-info' });
  const toggle = el('input', { type: 'checkbox', class: 'log-toggle', 'aria-label': 'log colour scale' });
  const canvas = el('canvas', { class: 'chart-canvas attention-canvas', 'aria-label': 'attention maps, one per head' });
  const colorbar = createColorbar();
  container.append(
    el('div', { class: 'view-toolbar' }, [el('label', { class: 'toggle' }, [toggle, ' log colour scale'])]),
    info, canvas, colorbar.element,
  );
  toggle.addEventListener('change', () => paint());

  let maps = []; // per head: rows of weights (queries x keys)
  let images = []; // per head: one pixel per cell
  let layout = null;
  let max = 0;
  let tokens = [];
  let original = [];

  // Colours of every head on the shared scale (linear 0..max, or log), the
  // colour bar to match, then a draw.
  function paint() {
    const log = toggle.checked;
    const colorOf = (v) => {
      if (!Number.isFinite(v)) return NONFINITE_RGB.slice();
      if (log && v <= 0) return NONPOSITIVE_RGB.slice();
      return viridisColor(attentionT(v, max, log));
    };
    images = maps.map((m) => gridImage(m, colorOf));
    const cells = maps.flat(2);
    const special = [];
    if (cells.some((v) => !Number.isFinite(v))) special.push('nonfinite');
    if (log && cells.some((v) => Number.isFinite(v) && v <= 0)) special.push('nonpositive');
    colorbar.set({
      colors: VIRIDIS_CSS,
      min: log ? formatValue(max / 10 ** LOG_DECADES) : '0',
      max: formatValue(max),
      title: `attention weight${log ? ', log colour scale' : ''} (all heads share the scale)`,
      special,
    });
    draw();
  }

  function draw() {
    if (!maps.length) return;
    const width = (canvas.clientWidth || 360) - PAD.left;
    const queries = maps[0].length;
    const keys = queries ? maps[0][0].length : 0;
    layout = attentionLayout(maps.length, queries, keys, width);
    const { ctx } = setupCanvas(canvas, Math.ceil(layout.height + PAD.top + PAD.bottom));
    ctx.translate(PAD.left, PAD.top);
    // Crisp cells when they are a pixel or more; below that (many heads,
    // long sequences) smoothing averages cells instead of dropping some.
    ctx.imageSmoothingEnabled = layout.cell < 1;
    ctx.font = CANVAS_FONT;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'bottom';
    const hit = hover.current;
    for (const p of layout.panels) {
      ctx.drawImage(images[p.head], p.x, p.y, p.width, p.height);
      ctx.strokeStyle = '#bdbdbd';
      ctx.lineWidth = 1;
      ctx.strokeRect(p.x - 0.5, p.y - 0.5, p.width + 1, p.height + 1);
      ctx.fillStyle = hit && hit.head === p.head ? '#212121' : '#616161';
      ctx.fillText(`head ${p.head}`, p.x, p.y - 2);
    }
    if (hit) {
      const c = layout.cell;
      for (const p of layout.panels) {
        const own = p.head === hit.head;
        ctx.strokeStyle = own ? '#ffffff' : 'rgba(255, 255, 255, 0.7)';
        ctx.lineWidth = own ? 2 : 1;
        const s = Math.max(c, own ? 4 : 3);
        const x = p.x + (hit.key + 0.5) * c - s / 2;
        const y = p.y + (hit.query + 0.5) * c - s / 2;
        ctx.strokeRect(x, y, s, s);
        if (own) {
          ctx.strokeStyle = '#212121';
          ctx.lineWidth = 1;
          ctx.strokeRect(x - 1.5, y - 1.5, s + 3, s + 3);
        }
      }
    }
    canvas.dataset.heads = String(layout.panels.length);
  }

  const hover = trackHover(canvas, tooltip, {
    hitAt: (event) => (layout ? attentionHit(layout, event.offsetX - PAD.left, event.offsetY - PAD.top) : undefined),
    lines: (hit) => {
      const v = maps[hit.head][hit.query][hit.key];
      const queries = maps[0].length;
      const keys = maps[0][0].length;
      return [
        `head ${hit.head}`,
        ['query', describePosition(hit.query, queries, original[1], tokens)],
        ['key', describePosition(hit.key, keys, original[2], tokens)],
        ['weight', formatValue(v), Number.isFinite(v) ? '' : 'is-nonfinite'],
      ];
    },
    redraw: draw,
    none: null,
    same: (a, b) => a && b && a.head === b.head && a.query === b.query && a.key === b.key,
  });

  return {
    update(data) {
      const values = Array.isArray(data.values) ? data.values : [];
      if (!values.every((m) => Array.isArray(m) && m.every(Array.isArray))) {
        throw new Error('attention values must be [heads, queries, keys]');
      }
      maps = values;
      tokens = data.labels || [];
      const shape = data.shape && data.shape.length === 3
        ? data.shape : [maps.length, maps[0]?.length ?? 0, maps[0]?.[0]?.length ?? 0];
      original = data.original_shape && data.original_shape.length === 3 ? data.original_shape : shape;
      max = attentionMax(maps);
      info.textContent = `${describeAttention(original, shape, data.reduction)} · rows: queries, columns: keys`;
      hover.clear();
      paint();
    },
    redraw: draw,
    exportParts: () => ({
      canvases: [{ canvas, caption: info.textContent }],
      colorbars: [colorbar.exportPart()],
      notes: toggle.checked ? ['log colour scale'] : [],
    }),
  };
}
