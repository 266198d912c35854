/**
 * Numbers the panels show about a chart, pure (node-testable): the card
 * header summary, bar sorting, confusion-matrix precision/recall, row
 * normalisation and run-vs-run differences.
 */

import { formatValue } from './charts.js';

/**
 * Min, max and non-finite counts of one step's values (nested arrays).
 * @param {Array} values
 * @param {?number[]} [range] the exact [min, max] of the finite values when
 *   the server sends one (heatmaps: the cells may be float16-rounded, the
 *   range is the float32 original); used for min/max when given.
 * @returns {{min: number, max: number, count: number, nan: number,
 *   posInf: number, negInf: number, nonfinite: number}} min/max are NaN when
 *   no value is finite; count is the number of finite values.
 */
export function stepSummary(values, range) {
  const s = { min: Infinity, max: -Infinity, count: 0, nan: 0, posInf: 0, negInf: 0, nonfinite: 0 };
  const visit = (v) => {
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    if (typeof v !== 'number') return;
    if (Number.isNaN(v)) s.nan += 1;
    else if (v === Infinity) s.posInf += 1;
    else if (v === -Infinity) s.negInf += 1;
    else {
      if (v < s.min) s.min = v;
      if (v > s.max) s.max = v;
      s.count += 1;
    }
  };
  visit(values);
  s.nonfinite = s.nan + s.posInf + s.negInf;
  if (!s.count) {
    s.min = NaN;
    s.max = NaN;
  } else if (Array.isArray(range) && range.length === 2 && range.every(Number.isFinite)) {
    [s.min, s.max] = range;
  }
  return s;
}

/**
 * The card header line: "min 0.1 · max 3 · NaN 0", plus "· ±Inf n" when
 * infinities are present.
 * @param {ReturnType<typeof stepSummary>} s
 * @returns {string}
 */
export function formatSummary(s) {
  const parts = [
    `min ${s.count ? formatValue(s.min) : '–'}`,
    `max ${s.count ? formatValue(s.max) : '–'}`,
    `NaN ${s.nan}`,
  ];
  if (s.posInf + s.negInf) parts.push(`±Inf ${s.posInf + s.negInf}`);
  return parts.join(' · ');
}

/** Bar orders a user can pick. */
export const SORT_MODES = Object.freeze({
  model: 'model order',
  desc: 'largest first',
  asc: 'smallest first',
});

/**
 * Display order of bars: indices into `values`. "model" keeps the order the
 * model defines; "desc"/"asc" sort by value, with non-finite bars first in
 * both (they are what the user must see) and ties in model order.
 * @param {number[]} values
 * @param {'model'|'desc'|'asc'} mode
 * @returns {number[]}
 */
export function sortOrder(values, mode) {
  const order = values.map((_, i) => i);
  if (mode !== 'desc' && mode !== 'asc') return order;
  const sign = mode === 'desc' ? -1 : 1;
  return order.sort((a, b) => {
    const fa = Number.isFinite(values[a]);
    const fb = Number.isFinite(values[b]);
    if (fa !== fb) return fa ? 1 : -1;
    if (!fa) return a - b;
    return sign * (values[a] - values[b]) || a - b;
  });
}

/**
 * Per-class statistics of a confusion matrix (rows = true class, columns =
 * predicted class). Divisions by zero give NaN ("undefined", shown as –).
 * @param {number[][]} m square matrix of counts
 * @returns {{support: number[], predicted: number[], precision: number[],
 *   recall: number[], total: number, accuracy: number}}
 */
export function confusionStats(m) {
  const n = m.length;
  const support = m.map((row) => row.reduce((a, b) => a + b, 0));
  const predicted = Array.from({ length: n }, (_, j) => m.reduce((a, row) => a + (row[j] ?? 0), 0));
  const ratio = (a, b) => (b > 0 && Number.isFinite(a) ? a / b : NaN);
  const diag = m.map((row, i) => row[i] ?? 0);
  const total = support.reduce((a, b) => a + b, 0);
  return {
    support,
    predicted,
    precision: diag.map((d, j) => ratio(d, predicted[j])),
    recall: diag.map((d, i) => ratio(d, support[i])),
    total,
    accuracy: ratio(diag.reduce((a, b) => a + b, 0), total),
  };
}

/**
 * Each row divided by its sum (a row of a confusion matrix becomes "where
 * did the examples of this true class go"). An all-zero row stays zero; a
 * row with a non-finite entry becomes all NaN (its shares are unknown).
 * @param {number[][]} m
 * @returns {number[][]}
 */
export function rowNormalize(m) {
  return m.map((row) => {
    const sum = row.reduce((a, b) => a + b, 0);
    if (!Number.isFinite(sum)) return row.map(() => NaN);
    return row.map((v) => (sum > 0 ? v / sum : 0));
  });
}

/**
 * The shape of a nested array ([rows, cols] for a matrix, [n] for a list).
 * @param {Array} a
 * @returns {number[]}
 */
export function shapeOf(a) {
  const shape = [];
  let x = a;
  while (Array.isArray(x)) {
    shape.push(x.length);
    x = x[0];
  }
  return shape;
}

/**
 * Element-wise a - b when both have the same shape, else null. Any
 * non-finite operand gives a non-finite result (NaN for Inf - Inf).
 * @param {Array} a nested numbers
 * @param {Array} b nested numbers
 * @returns {Array|null}
 */
export function difference(a, b) {
  const sa = shapeOf(a);
  const sb = shapeOf(b);
  if (sa.length !== sb.length || sa.some((d, i) => d !== sb[i])) return null;
  const sub = (x, y) => (Array.isArray(x) ? x.map((v, i) => sub(v, y[i])) : x - y);
  return sub(a, b);
}

/**
 * Merges label lists keeping first-seen order, for comparing runs whose
 * models share some layer names (layers of run B missing from run A are
 * appended after A's).
 * @param {string[][]} lists
 * @returns {string[]}
 */
export function unionLabels(lists) {
  const seen = new Set();
  const out = [];
  for (const list of lists) {
    for (const name of list || []) {
      if (!seen.has(name)) {
        seen.add(name);
        out.push(name);
      }
    }
  }
  return out;
}
