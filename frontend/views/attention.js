/**
 * Attention view: every head of one module as small multiples (queries are
 * rows, keys are columns), one shared viridis scale so heads compare
 * (linear 0..max, or log over the top decades: `.log-toggle`), a colour bar, and a tooltip with head, query and key position (the
 * step's tokens when the run logged them, a token range for pooled bins;
 * attentiontokens.js decides when tokens belong to a side) and the weight.
 * Where cells are tall enough, tokens also label the axes: queries left of
 * the first column of maps, keys below the lowest map of each column. The
 * hovered cell is outlined in its head and, thinner, at the same place in
 * every other head. Non-finite weights are red.
 *
 * DOM hooks: `.attention-canvas` (data-heads once drawn, data-label-band:
 * the px the axis labels take left of the maps, 0 without labels),
 * `.attention-info`.
 */

import {
  attentionHit, attentionLayout, attentionMax, attentionT, describeAttention, LOG_DECADES,
} from '../attentiongeom.js';
import {
  axisLabels, describeSide, hoverSummary, labelBand, stepTokens,
} from '../attentiontokens.js';
import { formatValue } from '../charts.js';
import {
  colorStops, NONFINITE_RGB, NONPOSITIVE_RGB, viridisColor,
} from '../colors.js';
import { CANVAS_FONT, el, setupCanvas, trackHover } from '../dom.js';
import { createColorbar } from './legend.js';
import { gridImage } from './matrix.js';

const VIRIDIS_CSS = colorStops(viridisColor);
const PAD = { left: 2, top: 2, bottom: 4 };
const LABEL_CHARS = 12; // longest axis label (the hover shows the whole token)
const LABEL_FONT_PX = 10;

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
  let band = 0; // axis labels: px left of the maps (and below them)
  let axes = { queries: null, keys: null };
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
    const layoutFor = (w) => attentionLayout(maps.length, queries, keys, w);
    const labels = axisLabels(tokens, queries, keys, LABEL_CHARS);
    const fitted = labels.queries || labels.keys
      ? labelBand(layoutFor, width, widestLabel([...(labels.queries || []), ...(labels.keys || [])])) : null;
    layout = fitted ? fitted.layout : layoutFor(width);
    band = fitted ? fitted.band : 0;
    axes = fitted ? labels : { queries: null, keys: null };
    const bottomBand = axes.keys ? band : 0;
    const { ctx } = setupCanvas(canvas, Math.ceil(layout.height + bottomBand + PAD.top + PAD.bottom));
    ctx.translate(PAD.left + band, PAD.top);
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
    drawAxisLabels(ctx);
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
    canvas.dataset.labelBand = String(band);
  }

  // The widest of `texts` in the label font (CSS px).
  function widestLabel(texts) {
    const ctx = canvas.getContext('2d');
    ctx.save();
    ctx.font = CANVAS_FONT.replace(/^\d+px/, `${LABEL_FONT_PX}px`);
    let widest = 0;
    for (const t of texts) widest = Math.max(widest, ctx.measureText(t).width);
    ctx.restore();
    return widest;
  }

  // Query tokens left of the first column of maps, key tokens below the
  // lowest map of each column (read top to bottom), in the layout's frame.
  function drawAxisLabels(ctx) {
    if (!band) return;
    const c = layout.cell;
    const size = Math.min(LABEL_FONT_PX, Math.floor(c));
    const hit = hover.current;
    const font = CANVAS_FONT.replace(/^\d+px/, `${size}px`);
    // The hovered query and key read darker and bold on every axis.
    const style = (on) => {
      ctx.font = on ? `bold ${font}` : font;
      ctx.fillStyle = on ? '#000000' : '#616161';
    };
    ctx.save();
    const lowest = new Map(); // column x -> lowest panel
    for (const p of layout.panels) {
      if (axes.queries && p.x === 0) {
        ctx.textAlign = 'right';
        ctx.textBaseline = 'middle';
        axes.queries.forEach((t, q) => {
          style(hit && hit.query === q);
          ctx.fillText(t, -3, p.y + (q + 0.5) * c, band - 4);
        });
      }
      if (!lowest.has(p.x) || lowest.get(p.x).y < p.y) lowest.set(p.x, p);
    }
    if (axes.keys) {
      for (const p of lowest.values()) {
        axes.keys.forEach((t, k) => {
          ctx.save();
          ctx.translate(p.x + (k + 0.5) * c, p.y + p.height + 3);
          ctx.rotate(-Math.PI / 2);
          ctx.textAlign = 'right';
          ctx.textBaseline = 'middle';
          style(hit && hit.key === k);
          ctx.fillText(t, 0, 0, band - 4);
          ctx.restore();
        });
      }
    }
    ctx.restore();
  }

  const hover = trackHover(canvas, tooltip, {
    hitAt: (event) => (layout
      ? attentionHit(layout, event.offsetX - PAD.left - band, event.offsetY - PAD.top) : undefined),
    lines: (hit) => {
      const v = maps[hit.head][hit.query][hit.key];
      const queries = maps[0].length;
      const keys = maps[0][0].length;
      const query = describeSide(hit.query, queries, original[1], tokens);
      const key = describeSide(hit.key, keys, original[2], tokens);
      const lines = [
        `head ${hit.head}`,
        ['query', query],
        ['key', key],
        ['weight', formatValue(v), Number.isFinite(v) ? '' : 'is-nonfinite'],
      ];
      // With tokens, one line reads as a sentence: query "the" → key "cat".
      const summary = hoverSummary(hit, [queries, keys], [original[1], original[2]], tokens, formatValue(v));
      if (summary) lines.push(summary);
      return lines;
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
      tokens = stepTokens(data);
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
