// Unit tests of horizontal bar geometry (frontend/hbars.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  HBARS, horizontalBarLayout, labelColumnWidth, rowAt, rowLabelBox, useHorizontalBars, valueAxis, visibleRows,
} from '../../frontend/hbars.js';

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test('more than ~40 bars become rows', () => {
  assert.equal(useHorizontalBars(40), false);
  assert.equal(useHorizontalBars(41), true);
  assert.equal(useHorizontalBars(290), true);
});

test('row names never overlap: every box sits inside its own row', () => {
  assert.ok(HBARS.rowHeight >= HBARS.fontPx + 2);
  let previous = null;
  for (let i = 0; i < 290; i++) {
    const box = rowLabelBox(i);
    assert.ok(box.top >= i * HBARS.rowHeight && box.bottom <= (i + 1) * HBARS.rowHeight);
    if (previous) assert.ok(box.top - previous.bottom >= HBARS.rowHeight - HBARS.fontPx - 1e-9);
    previous = box;
  }
});

test('linear rows: bars grow from zero, negative ones to the left', () => {
  const plot = { x: 100, width: 200 };
  const layout = horizontalBarLayout([1, -0.5, 2, NaN], plot);
  assert.deepEqual(layout.domain, [-1, 2]);
  close(layout.baseline, 100 + 200 / 3);
  const [a, b, c, d] = layout.bars;
  assert.equal(a.kind, 'bar');
  close(a.left, layout.baseline);
  close(a.right, layout.toX(1));
  close(b.right, layout.baseline);
  close(b.left, layout.toX(-0.5));
  close(c.right, 300);
  assert.equal(d.kind, 'nonfinite');
  assert.equal(layout.height, 4 * HBARS.rowHeight);
  layout.bars.forEach((bar, i) => {
    assert.ok(bar.top >= i * HBARS.rowHeight && bar.top + bar.height <= (i + 1) * HBARS.rowHeight);
  });
});

test('log rows: decades around the positive values, <= 0 marked', () => {
  const layout = horizontalBarLayout([1e-6, 0.5, 0, -1], { x: 0, width: 100 }, 'log');
  assert.deepEqual(layout.domain, [1e-7, 1]);
  assert.equal(layout.bars[2].kind, 'nonpositive');
  assert.equal(layout.bars[3].kind, 'nonpositive');
  close(layout.bars[0].left, 0);
  assert.ok(layout.bars[0].right > 0, 'the smallest value still has a visible bar');
  close(layout.toX(1), 100);
  assert.deepEqual(valueAxis([], { x: 0, width: 10 }).domain, [0, 1]);
});

test('only the rows in view are drawn; hover finds the row under the mouse', () => {
  assert.deepEqual(visibleRows(0, 420, 290), { first: 0, last: Math.ceil(420 / HBARS.rowHeight) - 1 });
  assert.deepEqual(visibleRows(290 * HBARS.rowHeight - 420, 420, 290).last, 289);
  assert.deepEqual(visibleRows(8, 32, 290, 16), { first: 0, last: 2 });
  assert.deepEqual(visibleRows(0, 420, 0), { first: 0, last: -1 });
  assert.equal(rowAt(0, 290), 0);
  assert.equal(rowAt(HBARS.rowHeight * 17 + 0.5, 290), 17);
  assert.equal(rowAt(HBARS.rowHeight * 290, 290), -1);
  assert.equal(rowAt(-1, 290), -1);
});

test('the name column fits the longest name within bounds', () => {
  assert.equal(labelColumnWidth([20, 30], 600), HBARS.labelMin);
  assert.equal(labelColumnWidth([150], 600), 160);
  assert.equal(labelColumnWidth([900], 600), 270);
});
