// Unit tests of frontend/stats.js. Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  confusionStats, difference, formatSummary, rowNormalize, shapeOf, sortOrder, stepSummary,
  unionLabels,
} from '../../frontend/stats.js';

test('stepSummary counts NaN and infinities separately and ignores them for min/max', () => {
  const s = stepSummary([[1, NaN], [-2, Infinity], [5, -Infinity], [NaN, 0]]);
  assert.equal(s.min, -2);
  assert.equal(s.max, 5);
  assert.equal(s.count, 4);
  assert.equal(s.nan, 2);
  assert.equal(s.posInf, 1);
  assert.equal(s.negInf, 1);
  assert.equal(s.nonfinite, 4);
  const none = stepSummary([NaN]);
  assert.ok(Number.isNaN(none.min) && Number.isNaN(none.max));
  assert.equal(none.count, 0);
});

test('formatSummary: min, max, NaN count, and ±Inf only when present', () => {
  assert.equal(formatSummary(stepSummary([0.5, 2, 3])), 'min 0.5 · max 3 · NaN 0');
  assert.equal(formatSummary(stepSummary([1, NaN, Infinity])), 'min 1 · max 1 · NaN 1 · ±Inf 1');
  assert.equal(formatSummary(stepSummary([NaN])), 'min – · max – · NaN 1');
});

test('sortOrder keeps model order or sorts by value with non-finite first', () => {
  const v = [3, NaN, 1, 7, -Infinity, 3];
  assert.deepEqual(sortOrder(v, 'model'), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(sortOrder(v, 'desc'), [1, 4, 3, 0, 5, 2]);
  assert.deepEqual(sortOrder(v, 'asc'), [1, 4, 2, 0, 5, 3]);
  assert.deepEqual(sortOrder([], 'desc'), []);
  assert.deepEqual(sortOrder([2, 1], 'unknown'), [0, 1]);
});

test('confusionStats: precision per predicted column, recall per true row', () => {
  // rows: true cat, dog, bird; columns: predicted
  const m = [[5, 1, 0], [2, 3, 0], [0, 0, 0]];
  const s = confusionStats(m);
  assert.deepEqual(s.support, [6, 5, 0]);
  assert.deepEqual(s.predicted, [7, 4, 0]);
  assert.deepEqual(s.precision.slice(0, 2), [5 / 7, 3 / 4]);
  assert.ok(Number.isNaN(s.precision[2])); // never predicted: undefined
  assert.deepEqual(s.recall.slice(0, 2), [5 / 6, 3 / 5]);
  assert.ok(Number.isNaN(s.recall[2])); // no true examples
  assert.equal(s.total, 11);
  assert.equal(s.accuracy, 8 / 11);
});

test('rowNormalize: rows sum to 1, zero rows stay 0, non-finite rows become NaN', () => {
  const r = rowNormalize([[1, 3], [0, 0], [NaN, 1]]);
  assert.deepEqual(r[0], [0.25, 0.75]);
  assert.deepEqual(r[1], [0, 0]);
  assert.ok(r[2].every(Number.isNaN));
});

test('difference subtracts matching shapes and refuses others', () => {
  assert.deepEqual(difference([[3, 2], [1, 0]], [[1, 1], [1, 1]]), [[2, 1], [0, -1]]);
  assert.equal(difference([[1, 2]], [[1], [2]]), null);
  assert.equal(difference([1, 2], [[1, 2]]), null);
  const d = difference([Infinity, NaN], [Infinity, 1]);
  assert.ok(Number.isNaN(d[0]) && Number.isNaN(d[1]));
  assert.deepEqual(shapeOf([[1, 2, 3], [4, 5, 6]]), [2, 3]);
  assert.deepEqual(shapeOf([]), [0]);
});

test('unionLabels keeps first-seen order', () => {
  assert.deepEqual(unionLabels([['a', 'b'], ['a', 'c', 'b'], undefined, ['d']]), ['a', 'b', 'c', 'd']);
});
