/**
 * Pure chart maths for the Model Insight tab: colour maps, number formatting,
 * geometry and hit-testing. No DOM and no canvas here, so every function runs
 * under `node --test` (tests/js/charts.test.mjs) and the views only draw.
 *
 * Conventions: coordinates are CSS pixels; "non-finite" means NaN, +Inf or
 * -Inf, which the views always mark instead of dropping.
 */

// ---------------------------------------------------------------- numbers --

/**
 * Counts NaN/+Inf/-Inf entries in a number or nested array of numbers.
 * @param {number|Array} values
 * @returns {number}
 */
export function countNonFinite(values) {
  if (Array.isArray(values)) {
    let n = 0;
    for (const v of values) n += countNonFinite(v);
    return n;
  }
  return typeof values === 'number' && !Number.isFinite(values) ? 1 : 0;
}

/**
 * Smallest and largest finite value in a nested array.
 * @param {Array} values
 * @returns {{min: number, max: number, count: number}} count of finite values;
 *   min/max are NaN when there is none.
 */
export function finiteExtent(values) {
  let min = Infinity;
  let max = -Infinity;
  let count = 0;
  const visit = (v) => {
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
    } else if (typeof v === 'number' && Number.isFinite(v)) {
      if (v < min) min = v;
      if (v > max) max = v;
      count += 1;
    }
  };
  visit(values);
  return count ? { min, max, count } : { min: NaN, max: NaN, count: 0 };
}

/**
 * Formats a value for labels and tooltips: short, and explicit about
 * non-finite values ("NaN", "Inf", "-Inf") so they are never shown as blank.
 * @param {number} v
 * @returns {string}
 */
export function formatValue(v) {
  if (typeof v !== 'number') return String(v);
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Inf';
  if (v === -Infinity) return '-Inf';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) {
    // 1.23e-5 rather than 0.0000123: the exponent is what matters for grads.
    const [m, e] = v.toExponential(2).split('e');
    return `${trimZeros(m)}e${e.replace('+', '')}`;
  }
  if (Number.isInteger(v)) return String(v);
  return trimZeros(v.toPrecision(4));
}

function trimZeros(s) {
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/**
 * Formats a percentage with one decimal ("12.5%"), "<0.1%" for tiny shares.
 * @param {number} p percent in [0, 100]
 * @returns {string}
 */
export function formatPercent(p) {
  if (!Number.isFinite(p)) return '–';
  if (p > 0 && p < 0.05) return '<0.1%';
  return `${p.toFixed(1)}%`;
}

/**
 * Shortens a label to at most `maxChars` characters by cutting its middle,
 * because layer names differ at both ends ("encoder.0.attn…out.weight").
 * @param {string} text
 * @param {number} maxChars at least 3
 * @returns {string}
 */
export function truncateMiddle(text, maxChars) {
  const s = String(text);
  if (s.length <= maxChars) return s;
  const keep = Math.max(2, maxChars) - 1;
  const head = Math.ceil(keep / 2);
  const tail = keep - head;
  return `${s.slice(0, head)}…${tail ? s.slice(s.length - tail) : ''}`;
}

// ----------------------------------------------------------------- colours --

// ColorBrewer RdBu end points around a light neutral: blue for negative,
// red for positive, readable for the common red-green colour deficiencies.
const DIVERGING_STOPS = [
  [-1, [33, 102, 172]],
  [-0.5, [146, 197, 222]],
  [0, [247, 247, 247]],
  [0.5, [244, 165, 130]],
  [1, [178, 24, 43]],
];

/**
 * Diverging blue-white-red colour for `value`, symmetric around zero: 0 is
 * white, -maxAbs full blue, +maxAbs full red. Values beyond ±maxAbs clamp.
 * Non-finite values get black (the views add a marker on top).
 * @param {number} value
 * @param {number} maxAbs largest |value| of the chart (see symmetricMax)
 * @returns {number[]} [r, g, b], each 0..255 integer
 */
export function divergingColor(value, maxAbs) {
  if (!Number.isFinite(value)) return [0, 0, 0];
  const t = maxAbs > 0 && Number.isFinite(maxAbs) ? Math.max(-1, Math.min(1, value / maxAbs)) : 0;
  for (let i = 1; i < DIVERGING_STOPS.length; i++) {
    const [t1, c1] = DIVERGING_STOPS[i];
    if (t <= t1) {
      const [t0, c0] = DIVERGING_STOPS[i - 1];
      const f = (t - t0) / (t1 - t0);
      return c0.map((c, k) => Math.round(c + (c1[k] - c) * f));
    }
  }
  return DIVERGING_STOPS[DIVERGING_STOPS.length - 1][1].slice();
}

/**
 * Half-width of the symmetric colour range: max |finite value|, 0 if none.
 * @param {Array} values nested numbers
 * @returns {number}
 */
export function symmetricMax(values) {
  const { min, max, count } = finiteExtent(values);
  return count ? Math.max(Math.abs(min), Math.abs(max)) : 0;
}

/** "rgb(r, g, b)" for an [r, g, b] triple. */
export function rgbString(rgb) {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

// Paul Tol's "muted" scheme (designed to stay distinct under colour-vision
// deficiencies and on white), plus a dark grey for a tenth class; cycles after.
export const CLASS_PALETTE = Object.freeze([
  '#332288', '#88ccee', '#44aa99', '#117733', '#999933',
  '#ddcc77', '#cc6677', '#882255', '#aa4499', '#555555',
]);

/** Colour of points without a class (class index -1). */
export const NO_CLASS_COLOR = '#bbbbbb';

/** Colour used to mark non-finite values (bars, pie legend, badges). */
export const NONFINITE_COLOR = '#d32f2f';

/**
 * Categorical colour of class `index` (cycling the palette), grey for -1 or
 * any non-integer index.
 * @param {number} index
 * @returns {string} CSS hex colour
 */
export function classColor(index) {
  if (!Number.isInteger(index) || index < 0) return NO_CLASS_COLOR;
  return CLASS_PALETTE[index % CLASS_PALETTE.length];
}

/**
 * Display name of class/layer `index`: its label, or "class i" without one.
 * @param {string[]} labels
 * @param {number} index
 * @param {string} [prefix="class"]
 * @returns {string}
 */
export function labelFor(labels, index, prefix = 'class') {
  if (!Number.isInteger(index) || index < 0) return 'no class';
  const name = labels && labels[index];
  return name !== undefined && name !== '' ? String(name) : `${prefix} ${index}`;
}

// ---------------------------------------------------------------- heatmap --

/**
 * Places a rows x cols grid inside a box. Cells are as large as fit, and no
 * more than `maxAspect` times taller than wide (or the reverse), so a 1 x 64
 * weight row stays a strip instead of filling the box with tall bars.
 * @param {number} rows
 * @param {number} cols
 * @param {{x: number, y: number, width: number, height: number}} box
 * @param {number} [maxAspect=4]
 * @returns {{x: number, y: number, width: number, height: number,
 *   cellW: number, cellH: number, rows: number, cols: number}}
 */
export function heatmapLayout(rows, cols, box, maxAspect = 4) {
  if (!(rows > 0 && cols > 0)) {
    return { x: box.x, y: box.y, width: 0, height: 0, cellW: 0, cellH: 0, rows: 0, cols: 0 };
  }
  let cellW = box.width / cols;
  let cellH = box.height / rows;
  if (cellH > cellW * maxAspect) cellH = cellW * maxAspect;
  if (cellW > cellH * maxAspect) cellW = cellH * maxAspect;
  const width = cellW * cols;
  const height = cellH * rows;
  return {
    x: box.x + (box.width - width) / 2,
    y: box.y + (box.height - height) / 2,
    width, height, cellW, cellH, rows, cols,
  };
}

/**
 * Which cell is under (x, y)?
 * @param {ReturnType<typeof heatmapLayout>} layout
 * @param {number} x
 * @param {number} y
 * @returns {{row: number, col: number}|null} null outside the grid
 */
export function heatmapHit(layout, x, y) {
  const col = Math.floor((x - layout.x) / layout.cellW);
  const row = Math.floor((y - layout.y) / layout.cellH);
  if (!(row >= 0 && row < layout.rows && col >= 0 && col < layout.cols)) return null;
  return { row, col };
}

/**
 * Describes how a heatmap was reduced, for the card ("128×64, mean-pooled
 * to 64×64"); the original shape comes from the writer's metadata.
 * @param {number[]} originalShape
 * @param {number[]} shape shape of the stored grid
 * @param {string} reduction "none", "mean_pool" or ""
 * @returns {string}
 */
export function describeShape(originalShape, shape, reduction) {
  const fmt = (s) => (s && s.length ? s.join('×') : '?');
  const orig = originalShape && originalShape.length ? originalShape : shape;
  if (reduction === 'mean_pool') return `shape ${fmt(orig)}, mean-pooled to ${fmt(shape)}`;
  if (reduction && reduction !== 'none') return `shape ${fmt(orig)}, ${reduction} to ${fmt(shape)}`;
  if (orig && shape && fmt(orig) !== fmt(shape)) return `shape ${fmt(orig)}, shown as ${fmt(shape)}`;
  return `shape ${fmt(orig)}`;
}

// -------------------------------------------------------------------- pie --

/**
 * Pie slices from per-class values. Angles start at 12 o'clock and run
 * clockwise (canvas angles, radians). Only finite values > 0 get a slice;
 * non-finite or negative values are listed in `invalid` (the legend marks
 * them), and percentages use the finite non-negative total.
 * @param {number[]} values
 * @returns {{total: number, allZero: boolean,
 *   slices: {index: number, value: number, percent: number, start: number, end: number}[],
 *   percents: number[], invalid: number[]}} percents[i] is NaN for invalid i.
 */
export function pieSlices(values) {
  const invalid = [];
  let total = 0;
  values.forEach((v, i) => {
    if (Number.isFinite(v) && v >= 0) total += v;
    else invalid.push(i);
  });
  const percents = values.map((v) => {
    if (!(Number.isFinite(v) && v >= 0)) return NaN;
    return total > 0 ? (v / total) * 100 : 0;
  });
  const slices = [];
  let angle = -Math.PI / 2;
  if (total > 0) {
    values.forEach((v, i) => {
      if (!(Number.isFinite(v) && v > 0)) return;
      const sweep = (v / total) * 2 * Math.PI;
      slices.push({ index: i, value: v, percent: percents[i], start: angle, end: angle + sweep });
      angle += sweep;
    });
  }
  return { total, allZero: total === 0, slices, percents, invalid };
}

/**
 * Which slice is under (x, y) for a pie centred at (cx, cy) with radius r?
 * @param {ReturnType<typeof pieSlices>['slices']} slices
 * @returns {number} the slice's class index, or -1
 */
export function pieHit(slices, cx, cy, r, x, y) {
  const dx = x - cx;
  const dy = y - cy;
  if (dx * dx + dy * dy > r * r) return -1;
  // Bring the angle into [-pi/2, 3pi/2), the range the slices cover.
  let a = Math.atan2(dy, dx);
  if (a < -Math.PI / 2) a += 2 * Math.PI;
  for (const s of slices) {
    if (a >= s.start && a < s.end) return s.index;
  }
  return -1;
}

// ------------------------------------------------------------------- axes --

/**
 * About `count` round tick values covering [min, max] (1, 2, 5 x 10^k steps).
 * @returns {number[]}
 */
export function linearTicks(min, max, count = 5) {
  if (!(Number.isFinite(min) && Number.isFinite(max))) return [];
  if (min === max) return [min];
  const step = tickStep(min, max, count);
  const ticks = [];
  const first = Math.ceil(min / step - 1e-9);
  const last = Math.floor(max / step + 1e-9);
  for (let k = first; k <= last; k++) {
    // Rounding through toPrecision removes 0.30000000000000004 noise.
    ticks.push(Number((k * step).toPrecision(12)));
  }
  return ticks;
}

// The smallest of 1, 2, 5, 10 (x 10^k) not below (max - min) / count; the
// epsilon keeps float noise (2.0000000001) from doubling the step.
function tickStep(min, max, count) {
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag - 1e-9;
  return (norm > 5 ? 10 : norm > 2 ? 5 : norm > 1 ? 2 : 1) * mag;
}

/**
 * [min, max] widened outwards to whole tick steps, so the axis ends on a
 * labelled tick (0..347 becomes 0..400 with count 4).
 * @returns {[number, number]}
 */
export function niceDomain(min, max, count = 5) {
  if (!(Number.isFinite(min) && Number.isFinite(max)) || min === max) return [min, max];
  const step = tickStep(min, max, count);
  const lo = Number((Math.floor(min / step + 1e-9) * step).toPrecision(12));
  const hi = Number((Math.ceil(max / step - 1e-9) * step).toPrecision(12));
  return [lo, hi];
}

/**
 * Powers of ten from lo to hi (both powers of ten), thinned to at most ~6.
 * @returns {number[]}
 */
export function logTicks(lo, hi) {
  const a = Math.round(Math.log10(lo));
  const b = Math.round(Math.log10(hi));
  const every = Math.max(1, Math.ceil((b - a) / 6));
  const ticks = [];
  for (let e = a; e <= b; e += every) ticks.push(pow10(e));
  return ticks;
}

// Exact powers of ten: 10 ** -4 is 0.00009999999999999999 in floating point.
function pow10(e) {
  return Number(`1e${e}`);
}

// ------------------------------------------------------------------- bars --

/**
 * Bar geometry for one value per layer inside `box`.
 *
 * Linear scale: the axis spans [min(0, min), max(0, max)] of the finite
 * values widened to round ticks (niceDomain), bars grow from 0 (negative
 * values go down).
 * Log scale: the axis spans the powers of ten around the positive finite
 * values; values <= 0 cannot be drawn and get kind "nonpositive" (the view
 * draws a hollow marker on the baseline and says so in the tooltip).
 * Non-finite values get kind "nonfinite" (a red marker, labelled NaN/Inf).
 *
 * @param {number[]} values
 * @param {{x: number, y: number, width: number, height: number}} box plot area
 * @param {'linear'|'log'} [scale='linear']
 * @returns {{bars: {index: number, value: number, kind: 'bar'|'nonfinite'|'nonpositive',
 *   x: number, width: number, top: number, bottom: number}[],
 *   domain: [number, number], ticks: number[], band: number,
 *   toY: function(number): number, scale: string, baseline: number}}
 */
export function barLayout(values, box, scale = 'linear') {
  const n = values.length;
  const band = n ? box.width / n : 0;
  const gap = Math.min(band * 0.2, 4);
  let domain;
  let toY;
  let ticks;
  if (scale === 'log') {
    const positive = values.filter((v) => Number.isFinite(v) && v > 0);
    // The bottom decade lies strictly below the smallest value, so that
    // value still gets a visible bar (1e-7 gives an axis from 1e-8).
    const lo = positive.length ? pow10(Math.ceil(Math.log10(Math.min(...positive))) - 1) : 1;
    let hi = positive.length ? pow10(Math.ceil(Math.log10(Math.max(...positive)))) : 10;
    if (hi <= lo) hi = lo * 10;
    domain = [lo, hi];
    const l0 = Math.log10(lo);
    const l1 = Math.log10(hi);
    toY = (v) => box.y + box.height - ((Math.log10(v) - l0) / (l1 - l0)) * box.height;
    ticks = logTicks(lo, hi);
  } else {
    const { min, max, count } = finiteExtent(values);
    let lo = count ? Math.min(0, min) : 0;
    let hi = count ? Math.max(0, max) : 1;
    if (lo === hi) hi = lo + 1;
    // The axis ends on labelled ticks, so every bar is read against a line.
    [lo, hi] = niceDomain(lo, hi, 4);
    ticks = linearTicks(lo, hi, 4);
    domain = [lo, hi];
    toY = (v) => box.y + box.height - ((v - lo) / (hi - lo)) * box.height;
  }
  const baseline = scale === 'log' ? box.y + box.height : toY(0);
  const bars = values.map((value, index) => {
    const x = box.x + index * band + gap / 2;
    const width = Math.max(1, band - gap);
    if (!Number.isFinite(value)) {
      return { index, value, kind: 'nonfinite', x, width, top: box.y, bottom: box.y + box.height };
    }
    if (scale === 'log' && value <= 0) {
      return { index, value, kind: 'nonpositive', x, width, top: baseline, bottom: baseline };
    }
    const y = toY(value);
    return { index, value, kind: 'bar', x, width, top: Math.min(y, baseline), bottom: Math.max(y, baseline) };
  });
  return { bars, domain, ticks, band, toY, scale, baseline };
}

/**
 * Index of the bar whose band contains x (the whole band, gaps included,
 * so thin bars are easy to hover), or -1.
 * @param {{x: number, width: number}} box the plot area given to barLayout
 * @param {number} n number of bars
 * @param {number} x
 * @returns {number}
 */
export function barHit(box, n, x) {
  if (!n || x < box.x || x >= box.x + box.width) return -1;
  return Math.min(n - 1, Math.floor(((x - box.x) / box.width) * n));
}

/**
 * Which bar labels to draw so that they do not overlap: every k-th label,
 * k chosen so that labels are at least `minSpacing` px apart.
 * @param {number} n number of bars
 * @param {number} band px per bar
 * @param {number} [minSpacing=14]
 * @returns {number} k >= 1
 */
export function labelStride(n, band, minSpacing = 14) {
  if (!(band > 0)) return Math.max(1, n);
  return Math.max(1, Math.ceil(minSpacing / band));
}

/** Bounds of the room below a bar plot for its labels (CSS px). */
export const BAR_LABEL_ROOM = Object.freeze({ min: 18, max: 84 });

/**
 * Room below a bar plot for labels written at 45 degrees: the longest
 * one's drop plus a gap, within BAR_LABEL_ROOM (longer ones are cut).
 * @param {number[]} widths label widths (px)
 * @returns {number}
 */
export function slantedLabelRoom(widths) {
  const longest = Math.max(0, ...widths);
  return Math.min(BAR_LABEL_ROOM.max, Math.max(BAR_LABEL_ROOM.min, longest * Math.SQRT1_2 + 12));
}

// ---------------------------------------------------------------- scatter --

/**
 * Maps [x, y, class] rows into `box`, keeping `pad` px free at each side so
 * edge points are not cut. Points with a non-finite coordinate cannot be
 * placed: they are returned in `nonfinite` (indices) for the card to report.
 * @param {number[][]} rows [x, y, classIndex] per point
 * @param {{x: number, y: number, width: number, height: number}} box
 * @param {number} [pad=8]
 * @returns {{points: {index: number, x: number, y: number, px: number, py: number, cls: number}[],
 *   nonfinite: number[], xDomain: [number, number], yDomain: [number, number],
 *   toPx: function(number): number, toPy: function(number): number}}
 */
export function scatterLayout(rows, box, pad = 8) {
  const nonfinite = [];
  const ok = [];
  rows.forEach((r, i) => {
    if (Number.isFinite(r[0]) && Number.isFinite(r[1])) ok.push(i);
    else nonfinite.push(i);
  });
  const xs = ok.map((i) => rows[i][0]);
  const ys = ok.map((i) => rows[i][1]);
  const xDomain = paddedDomain(xs);
  const yDomain = paddedDomain(ys);
  const w = Math.max(0, box.width - 2 * pad);
  const h = Math.max(0, box.height - 2 * pad);
  const toPx = (v) => box.x + pad + ((v - xDomain[0]) / (xDomain[1] - xDomain[0])) * w;
  // Screen y grows downward; data y grows upward.
  const toPy = (v) => box.y + pad + h - ((v - yDomain[0]) / (yDomain[1] - yDomain[0])) * h;
  const points = ok.map((i) => {
    const [x, y, c] = rows[i];
    return { index: i, x, y, px: toPx(x), py: toPy(y), cls: Number.isFinite(c) ? c : -1 };
  });
  return { points, nonfinite, xDomain, yDomain, toPx, toPy };
}

// A degenerate range (one point, or all equal) gets a unit-wide window
// centred on it so the point lands in the middle instead of dividing by 0.
function paddedDomain(vs) {
  if (!vs.length) return [0, 1];
  let lo = Math.min(...vs);
  let hi = Math.max(...vs);
  if (lo === hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  return [lo, hi];
}

/**
 * The point nearest to (x, y) within `maxDist` px.
 * @param {{px: number, py: number}[]} points
 * @param {number} x
 * @param {number} y
 * @param {number} [maxDist=8]
 * @returns {number} position in `points`, or -1
 */
export function nearestPoint(points, x, y, maxDist = 8) {
  let best = -1;
  let bestD = maxDist * maxDist;
  for (let i = 0; i < points.length; i++) {
    const dx = points[i].px - x;
    const dy = points[i].py - y;
    const d = dx * dx + dy * dy;
    if (d <= bestD) {
      best = i;
      bestD = d;
    }
  }
  return best;
}

// ------------------------------------------------------------------ steps --

/**
 * The logged step nearest to `value` (ties go to the earlier step).
 * @param {number[]} steps increasing
 * @param {number} value
 * @returns {number|undefined} undefined when steps is empty
 */
export function nearestStep(steps, value) {
  if (!steps.length) return undefined;
  let lo = 0;
  let hi = steps.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && value - steps[lo - 1] <= steps[lo] - value) return steps[lo - 1];
  return steps[lo];
}

/**
 * Step granularity for a range slider over `steps`: the gcd of their
 * differences, so every logged step is a reachable slider value.
 * @param {number[]} steps increasing integers
 * @returns {number} >= 1
 */
export function stepGranularity(steps) {
  const gcd = (a, b) => (b ? gcd(b, a % b) : a);
  let g = 0;
  for (let i = 1; i < steps.length; i++) g = gcd(g, steps[i] - steps[i - 1]);
  return g > 0 ? g : 1;
}
