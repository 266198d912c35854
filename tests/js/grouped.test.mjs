// Unit tests of the grouped-bar geometry (frontend/grouped.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { groupedBarHit, groupedBarLayout } from '../../frontend/grouped.js';

const box = { x: 0, y: 0, width: 200, height: 100 };

test('groupedBarLayout: one group per layer, one slot per run, a shared axis', () => {
  const layout = groupedBarLayout([[1, 2], [4, null]], box);
  assert.equal(layout.layers, 2);
  assert.equal(layout.runs, 2);
  assert.equal(layout.bars.length, 4);
  const [a0, b0, a1, b1] = layout.bars;
  assert.deepEqual([a0.run, a0.layer, b0.run, b0.layer], [0, 0, 1, 0]);
  assert.ok(b0.x > a0.x && a1.x > b0.x);
  // Shared axis: run b's 4 is taller than run a's 2.
  assert.ok(b0.bottom - b0.top > a1.bottom - a1.top);
  assert.equal(b1.kind, 'missing');
  assert.equal(b1.value, null);
  assert.equal(layout.domain[0], 0);
  assert.ok(layout.domain[1] >= 4);
});

test('groupedBarLayout marks non-finite and (on log) non-positive values', () => {
  const layout = groupedBarLayout([[NaN, 0], [1e-6, 1]], box, 'log');
  const kinds = layout.bars.map((b) => b.kind);
  assert.deepEqual(kinds, ['nonfinite', 'bar', 'nonpositive', 'bar']);
  assert.ok(layout.domain[0] < 1e-6);
});

test('groupedBarHit maps x to a layer and a run slot', () => {
  const layout = groupedBarLayout([[1, 2], [3, 4]], box);
  const bar = layout.bars.find((b) => b.layer === 1 && b.run === 1);
  assert.deepEqual(groupedBarHit(layout, box, bar.x + 1), { layer: 1, run: 1 });
  assert.deepEqual(groupedBarHit(layout, box, 1), { layer: 0, run: -1 }); // group padding
  assert.equal(groupedBarHit(layout, box, 250), null);
});
