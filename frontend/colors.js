/**
 * Colour scales for the panels, pure (node-testable): a viridis-like
 * sequential map with linear or log scaling, a colour-blind-safe palette for
 * runs, and CSS gradients for legends. The diverging blue-white-red map lives
 * in charts.js (divergingColor).
 *
 * Special colours: non-finite values are always the same red (they are
 * flagged, never hidden in the map), values a log scale cannot place (<= 0)
 * are a light grey, and missing cells (a layer absent at a step) are white.
 */

import { NONFINITE_COLOR } from './charts.js';

// Matplotlib's viridis sampled at nine points: perceptually uniform and
// readable under the common colour-vision deficiencies and in greyscale.
const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [253, 231, 37],
];

/** [r, g, b] of non-finite cells (the NONFINITE_COLOR red). */
export const NONFINITE_RGB = Object.freeze(hexToRgb(NONFINITE_COLOR));
/** [r, g, b] of values a log scale cannot show (<= 0). */
export const NONPOSITIVE_RGB = Object.freeze([214, 214, 214]);
/** [r, g, b] of cells with no value at all. */
export const MISSING_RGB = Object.freeze([255, 255, 255]);

/**
 * Viridis colour at `t` in [0, 1] (clamped; NaN gives the low end).
 * @param {number} t
 * @returns {number[]} [r, g, b] integers
 */
export function viridisColor(t) {
  const x = Number.isFinite(t) ? Math.max(0, Math.min(1, t)) : 0;
  const pos = x * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(pos));
  const f = pos - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + (VIRIDIS[i + 1][k] - c) * f));
}

/**
 * A sequential scale over the finite values of a nested array.
 *
 * Linear: the domain spans the finite min..max (from 0 when `zero`, e.g.
 * counts). Log: the domain spans the positive finite values; values <= 0
 * classify as "nonpositive". A constant domain maps every value to 0.5.
 *
 * @param {Array} values nested numbers; null entries mean "missing"
 * @param {{log?: boolean, zero?: boolean}} [options]
 * @returns {{log: boolean, domain: [number, number], empty: boolean,
 *   classify: function(*): 'value'|'nonfinite'|'nonpositive'|'missing',
 *   t: function(number): number}} t(v) in [0, 1] for "value" entries
 */
export function sequentialScale(values, { log = false, zero = false } = {}) {
  let lo = Infinity;
  let hi = -Infinity;
  const visit = (v) => {
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
    } else if (typeof v === 'number' && Number.isFinite(v) && (!log || v > 0)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  };
  visit(values);
  const empty = lo > hi;
  if (empty) {
    lo = log ? 1 : 0;
    hi = log ? 10 : 1;
  }
  if (zero && !log) {
    lo = Math.min(0, lo);
    hi = Math.max(0, hi);
  }
  const classify = (v) => {
    if (v === null || v === undefined) return 'missing';
    if (!Number.isFinite(v)) return 'nonfinite';
    if (log && v <= 0) return 'nonpositive';
    return 'value';
  };
  const a = log ? Math.log10(lo) : lo;
  const b = log ? Math.log10(hi) : hi;
  const t = (v) => {
    if (b === a) return 0.5;
    const x = log ? Math.log10(v) : v;
    return Math.max(0, Math.min(1, (x - a) / (b - a)));
  };
  return { log, domain: [lo, hi], empty, classify, t };
}

/**
 * The colour of `v` on `scale` (see sequentialScale): viridis for values,
 * the special colours otherwise.
 * @returns {number[]} [r, g, b]
 */
export function sequentialColor(scale, v) {
  switch (scale.classify(v)) {
    case 'missing': return MISSING_RGB.slice();
    case 'nonfinite': return NONFINITE_RGB.slice();
    case 'nonpositive': return NONPOSITIVE_RGB.slice();
    default: return viridisColor(scale.t(v));
  }
}

/**
 * `n` evenly spaced CSS colours of a colour function on [0, 1], for
 * legends (CSS gradients) and the PNG export.
 * @param {function(number): number[]} colorAt
 * @param {number} [n=9]
 * @returns {string[]}
 */
export function colorStops(colorAt, n = 9) {
  return Array.from({ length: n }, (_, i) => {
    const [r, g, b] = colorAt(i / Math.max(1, n - 1));
    return `rgb(${r}, ${g}, ${b})`;
  });
}

// Okabe & Ito's palette, ordered so that the first runs get the most
// distinct hues (blue, orange, green, pink); safe for colour-blind readers.
export const RUN_PALETTE = Object.freeze([
  '#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#000000', '#f0e442',
]);

/**
 * Colour of the run at position `index` of the sorted run list (cycles).
 * @param {number} index
 * @returns {string}
 */
export function runColor(index) {
  const i = Number.isInteger(index) && index >= 0 ? index : 0;
  return RUN_PALETTE[i % RUN_PALETTE.length];
}

/**
 * Black or white, whichever reads better on the background `rgb` (WCAG
 * relative luminance), for numbers written inside cells.
 * @param {number[]} rgb
 * @returns {string}
 */
export function textColorOn(rgb) {
  const lin = rgb.map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  const l = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  // Contrast with white is 1.05 / (l + 0.05), with black (l + 0.05) / 0.05.
  return 1.05 / (l + 0.05) >= (l + 0.05) / 0.05 ? '#ffffff' : '#000000';
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
