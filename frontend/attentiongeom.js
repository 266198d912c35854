/**
 * Geometry of the attention card, pure (tests/js/attentiongeom.test.mjs):
 * every head of one module as small multiples (a grid of queries x keys
 * maps, one title line above each), hit-testing, the 0..max colour scale,
 * and what a stored position stands for (a token, or a pooling bin of the
 * original positions).
 */

/** Layout defaults (CSS px). */
export const ATTENTION_LAYOUT = Object.freeze({
  maxHeight: 560, // the grid of maps grows no taller than this, nor much
  minHeight: 240, // taller than the card is wide (but may reach this)
  gap: 8, // between maps
  titleHeight: 14, // "head k" above each map
  maxCell: 14, // a 4x4 map does not fill the card with four huge cells
});

/**
 * Places `heads` maps of `queries` x `keys` cells in `width` px: the number
 * of columns that gives the largest cells within a height of `width`
 * (clamped to [minHeight, maxHeight]: the card stays about as tall as it is
 * wide), square cells, whole pixels when cells are at least 2 px (crisp
 * edges).
 * @param {number} heads
 * @param {number} queries
 * @param {number} keys
 * @param {number} width
 * @param {Partial<typeof ATTENTION_LAYOUT>} [options]
 * @returns {{cols: number, rows: number, cell: number, width: number, height: number,
 *   heads: number, queries: number, keys: number, titleHeight: number,
 *   panels: {head: number, x: number, y: number, width: number, height: number}[]}}
 *   panels[h]: the map of head h (its title sits above y); height: the whole grid
 */
export function attentionLayout(heads, queries, keys, width, options = {}) {
  const o = { ...ATTENTION_LAYOUT, ...options };
  const maxHeight = Math.max(o.minHeight, Math.min(o.maxHeight, width));
  const empty = {
    cols: 0, rows: 0, cell: 0, width: 0, height: 0, heads: 0, queries, keys, titleHeight: o.titleHeight, panels: [],
  };
  if (!(heads > 0 && queries > 0 && keys > 0 && width > 0)) return empty;
  let best = null;
  for (let cols = 1; cols <= heads; cols++) {
    const rows = Math.ceil(heads / cols);
    const byWidth = (width - (cols - 1) * o.gap) / (cols * keys);
    const byHeight = (maxHeight - rows * o.titleHeight - (rows - 1) * o.gap) / (rows * queries);
    const raw = Math.min(byWidth, byHeight, o.maxCell);
    const cell = raw >= 2 ? Math.floor(raw) : raw;
    // Ties go to fewer rows (a wider, shorter card).
    if (cell > 0 && (!best || cell >= best.cell - 1e-9)) best = { cols, rows, cell };
  }
  if (!best) {
    // Too many heads for the height: one column per head that fits the width.
    const cols = Math.max(1, Math.min(heads, Math.floor((width + o.gap) / (keys + o.gap))));
    best = { cols, rows: Math.ceil(heads / cols), cell: Math.max(0.5, (width - (cols - 1) * o.gap) / (cols * keys)) };
  }
  const { cell } = best;
  const mapW = cell * keys;
  const mapH = cell * queries;
  const panels = [];
  for (let head = 0; head < heads; head++) {
    const c = head % best.cols;
    const r = Math.floor(head / best.cols);
    panels.push({
      head,
      x: c * (mapW + o.gap),
      y: r * (mapH + o.titleHeight + o.gap) + o.titleHeight,
      width: mapW,
      height: mapH,
    });
  }
  return {
    cols: best.cols,
    rows: best.rows,
    cell,
    width: best.cols * mapW + (best.cols - 1) * o.gap,
    height: best.rows * (mapH + o.titleHeight) + (best.rows - 1) * o.gap,
    heads,
    queries,
    keys,
    titleHeight: o.titleHeight,
    panels,
  };
}

/**
 * The cell under (x, y), in the layout's coordinates.
 * @param {ReturnType<typeof attentionLayout>} layout
 * @param {number} x
 * @param {number} y
 * @returns {{head: number, query: number, key: number}|null} null between maps
 */
export function attentionHit(layout, x, y) {
  if (!layout.cell) return null;
  for (const p of layout.panels) {
    if (x >= p.x && x < p.x + p.width && y >= p.y && y < p.y + p.height) {
      const key = Math.min(layout.keys - 1, Math.floor((x - p.x) / layout.cell));
      const query = Math.min(layout.queries - 1, Math.floor((y - p.y) / layout.cell));
      return { head: p.head, query, key };
    }
  }
  return null;
}

/**
 * Largest finite weight (the top of the 0..max colour scale); 0 if none.
 * @param {Array} values nested numbers
 * @returns {number}
 */
export function attentionMax(values) {
  let max = 0;
  const visit = (v) => {
    if (Array.isArray(v)) for (const x of v) visit(x);
    else if (typeof v === 'number' && Number.isFinite(v) && v > max) max = v;
  };
  visit(values);
  return max;
}

/** Decades below the largest weight that the log colour scale spans. */
export const LOG_DECADES = 3;

/**
 * Position of `v` on the colour scale, in [0, 1]. Linear: 0..max (negative
 * values clamp to 0). Log: max / 10^LOG_DECADES..max, so the small weights
 * far from the diagonal show their structure; values <= 0 are 0 here (the
 * view draws them in the "not on a log scale" grey). A zero max puts
 * everything at 0.
 * @param {number} v finite
 * @param {number} max
 * @param {boolean} [log=false]
 * @returns {number}
 */
export function attentionT(v, max, log = false) {
  if (!(max > 0)) return 0;
  if (!log) return Math.max(0, Math.min(1, v / max));
  if (!(v > 0)) return 0;
  return Math.max(0, Math.min(1, 1 + Math.log10(v / max) / LOG_DECADES));
}

/**
 * The original positions a stored position covers: the bins of adaptive
 * average pooling (as `reduce.py` pools), `[start, end)`.
 * @param {number} index stored position
 * @param {number} stored positions stored
 * @param {number} original positions before pooling
 * @returns {[number, number]}
 */
export function poolingBin(index, stored, original) {
  if (!(original > stored) || !(stored > 0)) return [index, index + 1];
  return [Math.floor((index * original) / stored), Math.ceil(((index + 1) * original) / stored)];
}

/**
 * What the tooltip says about a query or key position: its index and
 * token ("5 · cat"), or the original positions of its pooling bin.
 * @param {number} index
 * @param {number} stored positions on this side
 * @param {number|undefined} original positions before pooling
 * @param {string[]} tokens token labels (may be empty)
 * @returns {string}
 */
export function describePosition(index, stored, original, tokens) {
  const [start, end] = poolingBin(index, stored, original || stored);
  if (end - start > 1) return `positions ${start}–${end - 1} of ${original}`;
  const token = tokens && tokens[index];
  return token !== undefined && token !== '' ? `${index} · ${JSON.stringify(token)}` : String(index);
}

/**
 * The line above the maps: "4 heads · 256×256 positions, mean-pooled to 64×64".
 * @param {number[]} originalShape [heads, queries, keys] before pooling
 * @param {number[]} shape stored [heads, queries, keys]
 * @param {string} reduction
 * @returns {string}
 */
export function describeAttention(originalShape, shape, reduction) {
  const [heads, q, k] = shape;
  const orig = originalShape && originalShape.length === 3 ? originalShape : shape;
  const head = `${heads} head${heads === 1 ? '' : 's'}`;
  const positions = `queries × keys ${orig[1]}×${orig[2]}`;
  if (reduction === 'mean_pool' || orig[1] !== q || orig[2] !== k) return `${head} · ${positions}, mean-pooled to ${q}×${k}`;
  return `${head} · ${positions}`;
}
