/**
 * Over-time geometry, pure (node-testable): the layers x steps matrix of a
 * bars tag, the stacked class shares of a pie tag, and step alignment
 * between runs that logged different steps.
 *
 * Input is a /series response (docs/http_api.md) after decoding:
 * `{steps: number[], values: Array[]}` with one array per step.
 */

import { nearestStep } from './charts.js';

/**
 * Bars over time as a matrix: one row per layer, one column per step, the
 * first stat column of each layer (what the bars draw). A layer missing at
 * a step is null.
 * @param {{steps: number[], values: Array[], labels?: string[]}} series
 * @returns {{rows: number, cols: number, steps: number[], grid: (number|null)[][],
 *   flagged: boolean[]}} flagged[r]: layer r has a non-finite value at some step
 */
export function layerStepMatrix(series) {
  const steps = series.steps || [];
  const perStep = (series.values || []).map((v) => (Array.isArray(v) ? v : []));
  const rows = Math.max((series.labels || []).length, ...perStep.map((v) => v.length), 0);
  const grid = Array.from({ length: rows }, () => new Array(steps.length).fill(null));
  const flagged = new Array(rows).fill(false);
  perStep.forEach((layerValues, c) => {
    layerValues.forEach((v, r) => {
      const x = Array.isArray(v) ? v[0] : v;
      if (typeof x !== 'number') return;
      grid[r][c] = x;
      if (!Number.isFinite(x)) flagged[r] = true;
    });
  });
  return { rows, cols: steps.length, steps, grid, flagged };
}

/**
 * Class shares per step for a stacked area. A step whose values are not
 * all finite and non-negative, or sum to 0, has no shares (null): the
 * chart leaves a gap there and flags it.
 * @param {{steps: number[], values: number[][]}} series
 * @returns {{steps: number[], classes: number, shares: (number[]|null)[],
 *   invalid: {step: number, reason: string}[]}}
 */
export function stackedShares(series) {
  const steps = series.steps || [];
  const values = series.values || [];
  const classes = Math.max(0, ...values.map((v) => (Array.isArray(v) ? v.length : 0)));
  const invalid = [];
  const shares = values.map((v, i) => {
    const row = Array.isArray(v) ? v : [];
    if (row.some((x) => !Number.isFinite(x))) {
      invalid.push({ step: steps[i], reason: 'non-finite value' });
      return null;
    }
    if (row.some((x) => x < 0)) {
      invalid.push({ step: steps[i], reason: 'negative value' });
      return null;
    }
    const total = row.reduce((a, b) => a + b, 0);
    if (!(total > 0)) {
      invalid.push({ step: steps[i], reason: 'all values are 0' });
      return null;
    }
    return Array.from({ length: classes }, (_, k) => (row[k] ?? 0) / total);
  });
  return { steps, classes, shares, invalid };
}

/**
 * Maps step numbers to x pixels across `box` (linear in the step number, so
 * irregular logging intervals keep their true spacing).
 * @param {number[]} steps increasing
 * @param {{x: number, width: number}} box
 * @returns {function(number): number}
 */
export function stepScale(steps, box) {
  const lo = steps.length ? steps[0] : 0;
  const hi = steps.length ? steps[steps.length - 1] : 0;
  if (hi === lo) return () => box.x + box.width / 2;
  return (s) => box.x + ((s - lo) / (hi - lo)) * box.width;
}

/**
 * Stacked-area geometry: for each class, runs of consecutive valid steps
 * (segments) with the band's top and bottom y at each step. Class 0 sits at
 * the bottom. Invalid steps (null shares) break every class's band.
 * @param {ReturnType<typeof stackedShares>} stacked
 * @param {{x: number, y: number, width: number, height: number}} box
 * @returns {{toX: function(number): number, bands: {x: number, top: number, bottom: number}[][][]}}
 *   bands[class][segment][point]
 */
export function stackedAreaLayout(stacked, box) {
  const toX = stepScale(stacked.steps, box);
  const toY = (share) => box.y + box.height - share * box.height;
  const bands = Array.from({ length: stacked.classes }, () => []);
  let open = false;
  stacked.shares.forEach((shares, i) => {
    if (!shares) {
      open = false;
      return;
    }
    const x = toX(stacked.steps[i]);
    let acc = 0;
    for (let k = 0; k < stacked.classes; k++) {
      const bottom = toY(acc);
      acc += shares[k];
      const top = toY(Math.min(1, acc));
      if (!open) bands[k].push([]);
      bands[k][bands[k].length - 1].push({ x, top, bottom });
    }
    open = true;
  });
  return { toX, bands };
}

/**
 * What is under (x, y) in a stacked area: the nearest step (by x) and the
 * class whose band holds y at that step (-1 outside, or at an invalid step).
 * @param {ReturnType<typeof stackedShares>} stacked
 * @param {{x: number, y: number, width: number, height: number}} box
 * @returns {{index: number, cls: number}|null} null outside the box
 */
export function stackedHit(stacked, box, x, y) {
  if (x < box.x - 4 || x > box.x + box.width + 4 || y < box.y || y > box.y + box.height) return null;
  const { steps } = stacked;
  if (!steps.length) return null;
  const toX = stepScale(steps, box);
  let index = 0;
  for (let i = 1; i < steps.length; i++) {
    if (Math.abs(toX(steps[i]) - x) < Math.abs(toX(steps[index]) - x)) index = i;
  }
  const shares = stacked.shares[index];
  if (!shares) return { index, cls: -1 };
  const share = (box.y + box.height - y) / box.height;
  let acc = 0;
  for (let k = 0; k < shares.length; k++) {
    acc += shares[k];
    if (share <= acc + 1e-12) return { index, cls: k };
  }
  return { index, cls: shares.length - 1 };
}

/**
 * Every step logged by any of the runs, increasing and without repeats.
 * @param {number[][]} stepLists
 * @returns {number[]}
 */
export function unionSteps(stepLists) {
  const all = new Set();
  for (const list of stepLists) for (const s of list || []) all.add(s);
  return [...all].sort((a, b) => a - b);
}

/**
 * The step each run shows when the shared slider is at `value`: its own
 * logged step nearest to it (runs log at different steps).
 * @param {Object<string, number[]>} stepsByRun
 * @param {number} value
 * @returns {Object<string, number|undefined>}
 */
export function alignSteps(stepsByRun, value) {
  const out = {};
  for (const [run, steps] of Object.entries(stepsByRun)) out[run] = nearestStep(steps || [], value);
  return out;
}
