/**
 * Geometry of horizontal bars, pure (tests/js/hbars.test.mjs): a bars tag
 * with many layers (hundreds of parameters) is drawn as one row per layer,
 * its name left of the bar, in a box that scrolls vertically. Rows are
 * never thinner than a line of text, so names never overlap, and only the
 * rows in view are drawn.
 *
 * Value scales follow barLayout (charts.js): linear from 0 to round ticks,
 * or log over the decades of the positive values; NaN/Inf rows are kind
 * "nonfinite", values <= 0 on a log scale "nonpositive".
 */

import {
  finiteExtent, linearTicks, logTicks, niceDomain,
} from './charts.js';

/** Layout constants (CSS px). */
export const HBARS = Object.freeze({
  threshold: 40, // more bars than this: horizontal rows
  rowHeight: 16, // > the 11 px label font plus a gap: labels never touch
  fontPx: 11,
  viewHeight: 420, // the scrolling box (style.css .bars-scroll)
  axisHeight: 20, // the value axis above the box
  labelMin: 60,
  labelShare: 0.45, // names take at most this share of the width
  right: 40, // room right of the longest bar for "NaN" / "Inf" and tick text
});

/**
 * Whether `n` bars are drawn as horizontal rows.
 * @param {number} n
 * @returns {boolean}
 */
export function useHorizontalBars(n) {
  return n > HBARS.threshold;
}

/**
 * Width of the name column: the longest name plus a gap, within
 * [labelMin, labelShare * width] (longer names are cut in the middle and
 * shown whole on hover).
 * @param {number[]} widths measured name widths (px)
 * @param {number} width the whole canvas width
 * @returns {number}
 */
export function labelColumnWidth(widths, width) {
  const longest = Math.max(0, ...widths) + 10;
  return Math.max(HBARS.labelMin, Math.min(longest, Math.floor(width * HBARS.labelShare)));
}

/**
 * Value axis along x.
 * @param {number[]} values
 * @param {{x: number, width: number}} plot the bar area
 * @param {'linear'|'log'} [scale='linear']
 * @returns {{domain: [number, number], ticks: number[], toX: function(number): number,
 *   baseline: number, scale: string}}
 */
export function valueAxis(values, plot, scale = 'linear') {
  let lo;
  let hi;
  let ticks;
  let toX;
  if (scale === 'log') {
    const positive = values.filter((v) => Number.isFinite(v) && v > 0);
    lo = positive.length ? 10 ** (Math.ceil(Math.log10(Math.min(...positive))) - 1) : 1;
    hi = positive.length ? 10 ** Math.ceil(Math.log10(Math.max(...positive))) : 10;
    lo = Number(lo.toPrecision(12));
    hi = Number(hi.toPrecision(12));
    if (hi <= lo) hi = lo * 10;
    const l0 = Math.log10(lo);
    const l1 = Math.log10(hi);
    toX = (v) => plot.x + ((Math.log10(v) - l0) / (l1 - l0)) * plot.width;
    ticks = logTicks(lo, hi);
  } else {
    const { min, max, count } = finiteExtent(values);
    lo = count ? Math.min(0, min) : 0;
    hi = count ? Math.max(0, max) : 1;
    if (lo === hi) hi = lo + 1;
    [lo, hi] = niceDomain(lo, hi, 4);
    ticks = linearTicks(lo, hi, 4);
    toX = (v) => plot.x + ((v - lo) / (hi - lo)) * plot.width;
  }
  const baseline = scale === 'log' ? plot.x : toX(0);
  return { domain: [lo, hi], ticks, toX, baseline, scale };
}

/**
 * One row per value: the bar's extent along x and the row's band along y
 * (content coordinates: row i spans [i * rowHeight, (i + 1) * rowHeight)).
 * @param {number[]} values in display order
 * @param {{x: number, width: number}} plot
 * @param {'linear'|'log'} [scale='linear']
 * @param {number} [rowHeight=HBARS.rowHeight]
 * @returns {{bars: {index: number, value: number, kind: 'bar'|'nonfinite'|'nonpositive',
 *   top: number, height: number, left: number, right: number}[], height: number,
 *   rowHeight: number} & ReturnType<typeof valueAxis>}
 */
export function horizontalBarLayout(values, plot, scale = 'linear', rowHeight = HBARS.rowHeight) {
  const axis = valueAxis(values, plot, scale);
  const gap = Math.min(4, rowHeight * 0.25);
  const bars = values.map((value, index) => {
    const top = index * rowHeight + gap / 2;
    const height = rowHeight - gap;
    if (!Number.isFinite(value)) return { index, value, kind: 'nonfinite', top, height, left: plot.x, right: plot.x + plot.width };
    if (scale === 'log' && value <= 0) return { index, value, kind: 'nonpositive', top, height, left: axis.baseline, right: axis.baseline };
    const x = axis.toX(value);
    return {
      index, value, kind: 'bar', top, height, left: Math.min(x, axis.baseline), right: Math.max(x, axis.baseline),
    };
  });
  return { ...axis, bars, height: values.length * rowHeight, rowHeight };
}

/**
 * The rows a scrolled box shows (partly shown rows included).
 * @param {number} scrollTop
 * @param {number} viewHeight
 * @param {number} n rows
 * @param {number} [rowHeight=HBARS.rowHeight]
 * @returns {{first: number, last: number}} inclusive; last < first when n is 0
 */
export function visibleRows(scrollTop, viewHeight, n, rowHeight = HBARS.rowHeight) {
  if (!n) return { first: 0, last: -1 };
  const first = Math.max(0, Math.min(n - 1, Math.floor(scrollTop / rowHeight)));
  const last = Math.max(first, Math.min(n - 1, Math.ceil((scrollTop + viewHeight) / rowHeight) - 1));
  return { first, last };
}

/**
 * The row at content y (the whole band, gaps included), or -1.
 * @param {number} y
 * @param {number} n
 * @param {number} [rowHeight=HBARS.rowHeight]
 * @returns {number}
 */
export function rowAt(y, n, rowHeight = HBARS.rowHeight) {
  if (!(y >= 0)) return -1;
  const i = Math.floor(y / rowHeight);
  return i < n ? i : -1;
}

/**
 * The vertical extent of row i's name, centred on its row: for a font of
 * `fontPx`, boxes of neighbouring rows are `rowHeight - fontPx` px apart.
 * @param {number} i
 * @param {number} [rowHeight=HBARS.rowHeight]
 * @param {number} [fontPx=HBARS.fontPx]
 * @returns {{top: number, bottom: number, middle: number}}
 */
export function rowLabelBox(i, rowHeight = HBARS.rowHeight, fontPx = HBARS.fontPx) {
  const middle = (i + 0.5) * rowHeight;
  return { top: middle - fontPx / 2, bottom: middle + fontPx / 2, middle };
}
