// Unit tests of the attention card's geometry (frontend/attentiongeom.js).
// Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ATTENTION_LAYOUT, LOG_DECADES, attentionHit, attentionLayout, attentionMax, attentionT, describeAttention,
  describePosition, poolingBin,
} from '../../frontend/attentiongeom.js';

const overlap = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

test('every head gets its own map inside the width, maps never overlap', () => {
  for (const [heads, q, k, width] of [[12, 64, 64, 400], [8, 64, 64, 760], [1, 5, 5, 360], [16, 32, 48, 500], [3, 10, 10, 200]]) {
    const layout = attentionLayout(heads, q, k, width);
    assert.equal(layout.panels.length, heads);
    assert.equal(layout.cols * layout.rows >= heads, true);
    assert.ok(layout.width <= width + 1e-9, `${layout.width} > ${width}`);
    for (const p of layout.panels) {
      assert.equal(p.width, layout.cell * k);
      assert.equal(p.height, layout.cell * q);
      assert.ok(p.x >= 0 && p.x + p.width <= width + 1e-9);
      assert.ok(p.y >= layout.titleHeight, 'the title line fits above the map');
      assert.ok(p.y + p.height <= layout.height + 1e-9);
    }
    for (let a = 0; a < heads; a++) {
      for (let b = a + 1; b < heads; b++) assert.ok(!overlap(layout.panels[a], layout.panels[b]), `${a} ${b}`);
    }
  }
});

test('the column count maximises the cell size within a height about the width', () => {
  for (const [heads, n, width] of [[12, 64, 400], [8, 12, 350], [8, 12, 760], [8, 64, 350]]) {
    const layout = attentionLayout(heads, n, n, width);
    const height = Math.max(ATTENTION_LAYOUT.minHeight, Math.min(ATTENTION_LAYOUT.maxHeight, width));
    assert.ok(layout.height <= height + 1e-9, `${layout.height} > ${height}`);
    for (let cols = 1; cols <= heads; cols++) {
      const rows = Math.ceil(heads / cols);
      const byW = (width - (cols - 1) * 8) / (cols * n);
      const byH = (height - rows * 14 - (rows - 1) * 8) / (rows * n);
      const best = Math.min(byW, byH, ATTENTION_LAYOUT.maxCell);
      assert.ok((best >= 2 ? Math.floor(best) : best) <= layout.cell + 1e-9, `${heads} heads, ${cols} cols`);
    }
  }
  // 8 heads of 12x12 in a 350 px card: 3 x 3 maps of 8 px cells, not a
  // tall 2 x 4 column.
  const narrow = attentionLayout(8, 12, 12, 350);
  assert.deepEqual([narrow.cols, narrow.rows, narrow.cell], [3, 3, 8]);
  // Small maps are capped, and whole pixels from 2 px up.
  const small = attentionLayout(2, 4, 4, 800);
  assert.equal(small.cell, ATTENTION_LAYOUT.maxCell);
  assert.equal(small.cols, 2);
  assert.ok(Number.isInteger(attentionLayout(4, 20, 20, 333).cell));
  assert.deepEqual(attentionLayout(0, 4, 4, 300).panels, []);
  assert.deepEqual(attentionLayout(2, 4, 4, 0).panels, []);
});

test('hit-testing finds head, query and key, and nothing between maps', () => {
  const layout = attentionLayout(4, 8, 6, 400);
  const p = layout.panels[3];
  const c = layout.cell;
  assert.deepEqual(attentionHit(layout, p.x + 0.5, p.y + 0.5), { head: 3, query: 0, key: 0 });
  assert.deepEqual(attentionHit(layout, p.x + 5.5 * c, p.y + 7.5 * c), { head: 3, query: 7, key: 5 });
  assert.deepEqual(attentionHit(layout, p.x + 2.5 * c, p.y + 1.5 * c), { head: 3, query: 1, key: 2 });
  assert.equal(attentionHit(layout, p.x - 1, p.y + 1), null);
  assert.equal(attentionHit(layout, p.x + 1, p.y - 1), null, 'the title line is not a cell');
  assert.equal(attentionHit(layout, p.x + p.width, p.y), null);
  for (const panel of layout.panels) {
    assert.equal(attentionHit(layout, panel.x + 1, panel.y + 1).head, panel.head);
  }
});

test('colour scale runs from 0 to the largest finite weight', () => {
  assert.equal(attentionMax([[[0.1, NaN], [Infinity, 0.7]], [[0.2, -1]]]), 0.7);
  assert.equal(attentionMax([[[NaN]]]), 0);
  assert.equal(attentionT(0.35, 0.7), 0.5);
  assert.equal(attentionT(-0.1, 0.7), 0);
  assert.equal(attentionT(2, 0.7), 1);
  assert.equal(attentionT(0.3, 0), 0);
  // Log: LOG_DECADES below the max up to the max.
  assert.equal(attentionT(0.7, 0.7, true), 1);
  assert.ok(Math.abs(attentionT(0.7 / 10 ** LOG_DECADES, 0.7, true)) < 1e-12);
  assert.ok(Math.abs(attentionT(0.7 / 10 ** (LOG_DECADES / 2), 0.7, true) - 0.5) < 1e-12);
  assert.equal(attentionT(1e-12, 0.7, true), 0);
  assert.equal(attentionT(0, 0.7, true), 0);
});

test('positions: tokens when unpooled, the pooling bin otherwise', () => {
  assert.deepEqual(poolingBin(0, 64, 256), [0, 4]);
  assert.deepEqual(poolingBin(63, 64, 256), [252, 256]);
  assert.deepEqual(poolingBin(1, 64, 100), [1, 4]); // adaptive bins overlap by one
  assert.deepEqual(poolingBin(5, 8, 8), [5, 6]);
  assert.equal(describePosition(1, 5, 5, ['The', 'cat']), '1 · "cat"');
  assert.equal(describePosition(3, 5, 5, ['The', 'cat']), '3');
  assert.equal(describePosition(2, 5, 5, []), '2');
  assert.equal(describePosition(63, 64, 256, []), 'positions 252–255 of 256');
  assert.equal(describeAttention([4, 256, 256], [4, 64, 64], 'mean_pool'), '4 heads · queries × keys 256×256, mean-pooled to 64×64');
  assert.equal(describeAttention([1, 5, 5], [1, 5, 5], 'none'), '1 head · queries × keys 5×5');
});
