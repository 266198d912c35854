/**
 * Token labels of the attention card, pure (tests/js/attentiontokens.test.mjs).
 *
 * A step's tokens come with its attention map (`data.tokens`: the run's
 * `attention/tokens` at that step, one string per input position) or, for
 * maps written with `attention_summary(tokens=...)`, as the tag's labels.
 * They label a side of the map only when they provably belong to it:
 *
 * - as many tokens as stored positions: one token per position;
 * - more tokens than stored positions, and the map was pooled (the side has
 *   the tag's original length, or the 64-position bound): each stored
 *   position is a pooling bin of the tokens, shown as a range
 *   ("the"…"cat").
 *
 * Anything else (a cross-attention side, a sequence cut at the writer's
 * bound) gets no labels rather than wrong ones.
 */

import { describePosition, poolingBin } from './attentiongeom.js';

/** Largest side of a stored map (watch() pools beyond it; attention.py). */
export const MAX_POSITIONS = 64;

/** Axis labels are drawn only where a cell is at least this tall (CSS px). */
export const MIN_LABEL_CELL = 9;

/** Widest axis label band (CSS px); longer texts are cut with "…". */
export const MAX_LABEL_BAND = 72;

/**
 * The token list of one attention step: its own tokens, else the tag's
 * labels (written with the maps), else empty.
 * @param {{tokens?: string[]|null, labels?: string[]}} data a /data body
 * @returns {string[]}
 */
export function stepTokens(data) {
  const own = data && Array.isArray(data.tokens) ? data.tokens : null;
  if (own && own.length) return own.map(String);
  const labels = data && Array.isArray(data.labels) ? data.labels : [];
  return labels.map(String);
}

/**
 * Which tokens each stored position of one side covers.
 * @param {string[]} tokens
 * @param {number} stored positions stored on this side
 * @param {number|undefined} original positions before pooling (the tag's)
 * @returns {Array<[number, number]>|null} per stored position, `[start,
 *   end)` in `tokens`; null when the tokens do not belong to this side
 */
export function tokenBins(tokens, stored, original) {
  const n = Array.isArray(tokens) ? tokens.length : 0;
  if (!n || !(stored > 0)) return null;
  if (n === stored) return Array.from({ length: stored }, (_, i) => [i, i + 1]);
  if (n > stored && (n === original || stored === MAX_POSITIONS)) {
    return Array.from({ length: stored }, (_, i) => poolingBin(i, stored, n));
  }
  return null;
}

/**
 * A token quoted for the tooltip: JSON string syntax, so spaces stay
 * visible between the quotes and control characters read as escapes.
 * @param {string} text
 * @returns {string}
 */
export function quoteToken(text) {
  return JSON.stringify(String(text));
}

/**
 * What the tooltip says about a query or key position: index and token
 * ('5 · "cat"'), or for a pooling bin its positions and first…last token
 * ('positions 0–3 of 256 · "The"…" on"'); without tokens as
 * describePosition says it.
 * @param {number} index stored position
 * @param {number} stored positions stored on this side
 * @param {number|undefined} original positions before pooling (the tag's)
 * @param {string[]} tokens the step's tokens (may be empty)
 * @returns {string}
 */
export function describeSide(index, stored, original, tokens) {
  const bins = tokenBins(tokens, stored, original);
  if (!bins || !bins[index]) return describePosition(index, stored, original, []);
  const [start, end] = bins[index];
  if (end - start <= 1) return `${start} · ${quoteToken(tokens[start])}`;
  return `positions ${start}–${end - 1} of ${tokens.length} · ${quoteToken(tokens[start])}…${quoteToken(tokens[end - 1])}`;
}

/**
 * The hover's one-line summary, 'query 5 "the" → key 2 "cat": 0.31', when
 * both positions are single tokens (a pooled bin's range reads better in
 * its own row).
 * @param {{query: number, key: number}} hit
 * @param {[number, number]} stored stored query and key positions
 * @param {[number|undefined, number|undefined]} original positions before pooling
 * @param {string[]} tokens
 * @param {string} weight formatted weight
 * @returns {string|null}
 */
export function hoverSummary(hit, stored, original, tokens, weight) {
  const queries = tokenBins(tokens, stored[0], original[0]);
  const keys = tokenBins(tokens, stored[1], original[1]);
  const q = queries && queries[hit.query];
  const k = keys && keys[hit.key];
  if (!q || !k || q[1] - q[0] !== 1 || k[1] - k[0] !== 1) return null;
  return `query ${q[0]} ${quoteToken(tokens[q[0]])} → key ${k[0]} ${quoteToken(tokens[k[0]])}: ${weight}`;
}

/**
 * A token as an axis label: whitespace made visible (newline ⏎, tab ⇥, a
 * token of spaces as ␣), other control characters as "·", at most
 * `maxChars` characters ("…" marks a cut).
 * @param {string} text
 * @param {number} maxChars
 * @returns {string}
 */
export function axisText(text, maxChars) {
  let visible = String(text).replace(/\n/g, '⏎').replace(/\t/g, '⇥')
    .replace(/[\u0000-\u001f\u007f]/g, '·'); // eslint-disable-line no-control-regex
  if (!visible.trim()) visible = visible.replace(/ /g, '␣');
  if (!visible) visible = '∅';
  const chars = Array.from(visible);
  if (chars.length <= maxChars) return visible;
  return `${chars.slice(0, Math.max(1, maxChars - 1)).join('')}…`;
}

/**
 * Axis labels of both sides, one per stored position, when every position
 * is one token (pooled bins get none: a range does not fit a cell's width;
 * the hover names it). Self-attention only needs one list; each side is
 * matched on its own.
 * @param {string[]} tokens
 * @param {number} queries stored query positions
 * @param {number} keys stored key positions
 * @param {number} maxChars
 * @returns {{queries: string[]|null, keys: string[]|null}}
 */
export function axisLabels(tokens, queries, keys, maxChars) {
  const side = (stored) => (Array.isArray(tokens) && tokens.length === stored && stored > 0
    ? tokens.map((t) => axisText(t, maxChars)) : null);
  return { queries: side(queries), keys: side(keys) };
}

/**
 * Whether axis labels fit, and the band they take: labels need cells at
 * least MIN_LABEL_CELL tall, and a band as wide as the widest label (at
 * most MAX_LABEL_BAND) left of the maps and below them.
 * @param {function(number): {cell: number}} layoutFor the layout for a
 *   given drawing width (attentionLayout with the card's heads and sides)
 * @param {number} width the whole drawing width
 * @param {number} widest the widest label, measured (CSS px)
 * @returns {{band: number, layout: Object}|null} null: draw no labels
 */
export function labelBand(layoutFor, width, widest) {
  if (!(widest > 0)) return null;
  const band = Math.ceil(Math.min(MAX_LABEL_BAND, widest + 6));
  if (width - band <= 0) return null;
  const layout = layoutFor(width - band);
  if (!(layout.cell >= MIN_LABEL_CELL)) return null;
  return { band, layout };
}
