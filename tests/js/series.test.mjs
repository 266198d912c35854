// Unit tests of the over-time geometry (frontend/series.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  alignSteps, layerStepMatrix, stackedAreaLayout, stackedHit, stackedShares, stepScale, unionSteps,
} from '../../frontend/series.js';

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test('layerStepMatrix puts layers in rows and steps in columns (stat column 0)', () => {
  const m = layerStepMatrix({
    steps: [0, 10, 20],
    labels: ['a', 'b'],
    values: [[1, 2], [[3, 9], [NaN, 9]], [5]],
  });
  assert.equal(m.rows, 2);
  assert.equal(m.cols, 3);
  assert.deepEqual(m.grid[0], [1, 3, 5]);
  assert.equal(m.grid[1][0], 2);
  assert.ok(Number.isNaN(m.grid[1][1]));
  assert.equal(m.grid[1][2], null); // missing at step 20
  assert.deepEqual(m.flagged, [false, true]);
});

test('layerStepMatrix of an empty series', () => {
  const m = layerStepMatrix({ steps: [], values: [] });
  assert.equal(m.rows, 0);
  assert.equal(m.cols, 0);
});

test('stackedShares normalises each step and drops invalid steps', () => {
  const s = stackedShares({
    steps: [1, 2, 3, 4, 5],
    values: [[1, 3], [2, 2], [NaN, 1], [0, 0], [-1, 2]],
  });
  assert.equal(s.classes, 2);
  assert.deepEqual(s.shares[0], [0.25, 0.75]);
  assert.deepEqual(s.shares[1], [0.5, 0.5]);
  assert.equal(s.shares[2], null);
  assert.equal(s.shares[3], null);
  assert.equal(s.shares[4], null);
  assert.deepEqual(s.invalid.map((x) => x.step), [3, 4, 5]);
  assert.match(s.invalid[0].reason, /non-finite/);
});

test('stepScale is linear in the step number; one step sits in the middle', () => {
  const toX = stepScale([0, 10, 40], { x: 10, width: 100 });
  assert.equal(toX(0), 10);
  assert.equal(toX(10), 35);
  assert.equal(toX(40), 110);
  assert.equal(stepScale([7], { x: 0, width: 50 })(7), 25);
});

test('stackedAreaLayout stacks classes bottom-up and breaks at invalid steps', () => {
  const stacked = stackedShares({ steps: [0, 1, 2, 3], values: [[1, 1], [1, 3], [NaN, 1], [3, 1]] });
  const box = { x: 0, y: 0, width: 30, height: 100 };
  const { bands } = stackedAreaLayout(stacked, box);
  assert.equal(bands.length, 2);
  assert.equal(bands[0].length, 2); // two segments around the NaN step
  const first = bands[0][0];
  assert.equal(first.length, 2);
  assert.deepEqual(first[0], { x: 0, top: 50, bottom: 100 });
  close(bands[1][0][1].top, 0);
  close(bands[1][0][1].bottom, 75);
  assert.equal(bands[0][1][0].x, 30);
});

test('stackedHit finds the nearest step and the band under the cursor', () => {
  const stacked = stackedShares({ steps: [0, 10], values: [[1, 3], [NaN, 1]] });
  const box = { x: 0, y: 0, width: 100, height: 100 };
  assert.deepEqual(stackedHit(stacked, box, 10, 90), { index: 0, cls: 0 }); // bottom 25%
  assert.deepEqual(stackedHit(stacked, box, 10, 10), { index: 0, cls: 1 });
  assert.deepEqual(stackedHit(stacked, box, 95, 50), { index: 1, cls: -1 }); // invalid step
  assert.equal(stackedHit(stacked, box, 50, 150), null);
});

test('unionSteps and alignSteps line up runs that logged different steps', () => {
  assert.deepEqual(unionSteps([[0, 10, 20], [0, 5, 20], undefined]), [0, 5, 10, 20]);
  assert.deepEqual(alignSteps({ a: [0, 10, 20], b: [0, 5, 20], c: [] }, 12), { a: 10, b: 5, c: undefined });
});
