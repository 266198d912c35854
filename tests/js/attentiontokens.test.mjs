import assert from 'node:assert/strict';
import test from 'node:test';

import { attentionLayout } from '../../frontend/attentiongeom.js';
import {
  axisLabels, axisText, describeSide, hoverSummary, labelBand, MAX_LABEL_BAND, MIN_LABEL_CELL,
  quoteToken, stepTokens, tokenBins,
} from '../../frontend/attentiontokens.js';

const WORDS = ['The', ' cat', ' sat', ' on', ' the', ' mat'];

test("a step's own tokens win over the tag's labels; neither gives none", () => {
  assert.deepEqual(stepTokens({ tokens: ['a', 'b'], labels: ['x', 'y'] }), ['a', 'b']);
  assert.deepEqual(stepTokens({ tokens: null, labels: ['x', 'y'] }), ['x', 'y']);
  assert.deepEqual(stepTokens({ tokens: [], labels: [] }), []);
  assert.deepEqual(stepTokens({}), []);
  assert.deepEqual(stepTokens(null), []);
});

test('tokens label a side one per position, or as pooling bins, never by guess', () => {
  assert.deepEqual(tokenBins(WORDS, 6, 6), [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]);
  // The tag's original length was frozen at another step: the count decides.
  assert.deepEqual(tokenBins(WORDS, 6, 40), tokenBins(WORDS, 6, 6));
  // Pooled: 256 tokens onto 64 positions, 4 each (the tag says 256).
  const many = Array.from({ length: 256 }, (_, i) => `t${i}`);
  const bins = tokenBins(many, 64, 256);
  assert.equal(bins.length, 64);
  assert.deepEqual(bins[0], [0, 4]);
  assert.deepEqual(bins[63], [252, 256]);
  // Pooled at the 64 bound while the frozen original says otherwise (a
  // longer batch later on): the tokens' own count gives the bins.
  const longer = Array.from({ length: 300 }, (_, i) => `t${i}`);
  assert.deepEqual(tokenBins(longer, 64, 256)[63], [295, 300]);
  // Neither: a cross-attention side, or a sequence the writer cut.
  assert.equal(tokenBins(WORDS, 4, 4), null);
  assert.equal(tokenBins(WORDS, 7, 7), null);
  assert.equal(tokenBins(longer, 32, 256), null);
  assert.equal(tokenBins([], 6, 6), null);
  assert.equal(tokenBins(undefined, 6, 6), null);
});

test('the hover names each position with its token, or a bin with first…last', () => {
  assert.equal(describeSide(1, 6, 6, WORDS), '1 · " cat"');
  assert.equal(describeSide(0, 6, 6, WORDS), '0 · "The"');
  const many = Array.from({ length: 256 }, (_, i) => `t${i}`);
  assert.equal(describeSide(1, 64, 256, many), 'positions 4–7 of 256 · "t4"…"t7"');
  // No tokens for this side: positions as before.
  assert.equal(describeSide(63, 64, 256, []), 'positions 252–255 of 256');
  assert.equal(describeSide(2, 4, 4, WORDS), '2');
  assert.equal(quoteToken('a\nb'), '"a\\nb"');
  assert.equal(hoverSummary({ query: 4, key: 1 }, [6, 6], [6, 6], WORDS, '0.31'), 'query 4 " the" → key 1 " cat": 0.31');
  // A pooled bin, or a side the tokens do not label: no sentence.
  assert.equal(hoverSummary({ query: 1, key: 1 }, [64, 64], [256, 256], many, '0.1'), null);
  assert.equal(hoverSummary({ query: 1, key: 1 }, [6, 4], [6, 4], WORDS, '0.1'), null);
  assert.equal(hoverSummary({ query: 1, key: 1 }, [6, 6], [6, 6], [], '0.1'), null);
});

test('axis labels show whitespace, cut long tokens, and exist only one per position', () => {
  assert.equal(axisText(' cat', 12), ' cat');
  assert.equal(axisText('\n', 12), '⏎');
  assert.equal(axisText('  ', 12), '␣␣');
  assert.equal(axisText('', 12), '∅');
  assert.equal(axisText('a\u0001b', 12), 'a·b');
  assert.equal(axisText('internationalisation', 8), 'interna…');
  assert.equal(Array.from(axisText('😀😀😀😀😀', 3)).length, 3);
  const labels = axisLabels(WORDS, 6, 6, 12);
  assert.deepEqual(labels.queries, WORDS);
  assert.deepEqual(labels.keys, WORDS);
  assert.deepEqual(axisLabels(WORDS, 64, 6, 12), { queries: null, keys: WORDS });
  assert.deepEqual(axisLabels([], 6, 6, 12), { queries: null, keys: null });
});

test('labels take a band only when cells stay tall enough to read them', () => {
  const layoutFor = (heads, n) => (w) => attentionLayout(heads, n, n, w);
  // One head of 6 positions in 400 px: big cells, a band as wide as the text.
  const roomy = labelBand(layoutFor(1, 6), 400, 30);
  assert.ok(roomy);
  assert.equal(roomy.band, 36);
  assert.ok(roomy.layout.cell >= MIN_LABEL_CELL);
  assert.ok(roomy.layout.width <= 400 - roomy.band);
  // The band is bounded however long the labels are.
  assert.equal(labelBand(layoutFor(1, 6), 400, 500).band, MAX_LABEL_BAND);
  // 12 heads of 64 positions in 400 px: cells of a few px, no labels.
  assert.equal(labelBand(layoutFor(12, 64), 400, 30), null);
  assert.equal(labelBand(layoutFor(1, 6), 400, 0), null);
  assert.equal(labelBand(layoutFor(1, 6), 20, 30), null);
});
