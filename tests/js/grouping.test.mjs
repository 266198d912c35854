// Unit tests of module-path grouping and the hierarchical tag filter
// (frontend/grouping.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  GROUP_MIN_CARDS, groupSpecs, makeTagFilter, moduleGroup, modulePath,
} from '../../frontend/grouping.js';

test('module path: the last part of the tag when it has a dot', () => {
  assert.equal(modulePath('weights/blocks.3.attn.q_proj.weight'), 'blocks.3.attn.q_proj.weight');
  assert.equal(modulePath('attention/blocks.3.attn'), 'blocks.3.attn');
  assert.equal(modulePath('fc1.weight'), 'fc1.weight');
  assert.equal(modulePath('gradients/norm'), null);
  assert.equal(modulePath('attention/entropy'), null);
  assert.equal(modulePath('loss'), null);
  assert.equal(modulePath('weights/.hidden'), null);
  assert.equal(modulePath('weights/a..b'), null);
});

test('group: up to the first numeric component, else the top-level module', () => {
  assert.equal(moduleGroup('weights/blocks.3.attn.q_proj.weight'), 'blocks.3');
  assert.equal(moduleGroup('attention/blocks.3.attn'), 'blocks.3');
  assert.equal(moduleGroup('weights/blocks.12.mlp.fc.bias'), 'blocks.12');
  assert.equal(moduleGroup('weights/transformer.h.11.attn.c_attn.weight'), 'transformer.h.11');
  assert.equal(moduleGroup('weights/encoder.layers.2.blocks.1.attn.weight'), 'encoder.layers.2');
  assert.equal(moduleGroup('weights/0.weight'), '0');
  assert.equal(moduleGroup('weights/tok_emb.weight'), 'tok_emb');
  assert.equal(moduleGroup('weights/transformer.wte.weight'), 'transformer');
  assert.equal(moduleGroup('gradients/norm'), null);
  assert.equal(moduleGroup('attention/entropy'), null);
});

const spec = (tag, run = 'r') => ({ tag, run });

test('groupSpecs: ungrouped first, then groups in order of their first card', () => {
  const tags = [];
  for (const b of [0, 1, 2, 10]) for (const p of ['attn.w', 'attn.b', 'mlp.w', 'mlp.b', 'ln.w', 'ln.b']) tags.push(`weights/blocks.${b}.${p}`);
  tags.push('weights/head.weight', 'weights/head.bias', 'gradients/norm');
  const groups = groupSpecs(tags.map((t) => spec(t)));
  assert.deepEqual(groups.map((g) => [g.name, g.specs.length]), [
    [null, 1], ['blocks.0', 6], ['blocks.1', 6], ['blocks.2', 6], ['blocks.10', 6], ['head', 2],
  ]);
  assert.deepEqual(groups[0].specs.map((s) => s.tag), ['gradients/norm']);
  // Every spec lands in exactly one group, order kept inside each.
  assert.equal(groups.reduce((n, g) => n + g.specs.length, 0), tags.length);
  assert.deepEqual(groups[2].specs.map((s) => s.tag), tags.slice(6, 12));
});

test('groupSpecs: small sections and single-group sections stay flat', () => {
  const few = ['weights/0.weight', 'weights/0.bias', 'weights/2.weight', 'weights/2.bias'].map((t) => spec(t));
  assert.deepEqual(groupSpecs(few).map((g) => g.name), [null]);
  assert.equal(groupSpecs(few)[0].specs.length, 4);
  const one = Array.from({ length: GROUP_MIN_CARDS }, (_, i) => spec(`weights/fc.w${i}`));
  assert.deepEqual(groupSpecs(one).map((g) => g.name), [null]);
  const none = Array.from({ length: GROUP_MIN_CARDS }, (_, i) => spec(`bars/t${i}`));
  assert.deepEqual(groupSpecs(none).map((g) => g.name), [null]);
  // No ungrouped specs: no empty ungrouped entry.
  const two = Array.from({ length: GROUP_MIN_CARDS }, (_, i) => spec(`weights/blocks.${i % 2}.w${i}`));
  assert.deepEqual(groupSpecs(two).map((g) => g.name), ['blocks.0', 'blocks.1']);
  assert.deepEqual(groupSpecs(few, 2).map((g) => g.name), ['0', '2']);
});

const TAGS = [
  'weights/blocks.3.attn.q_proj.weight', 'weights/blocks.3.mlp.fc.weight', 'weights/blocks.30.attn.q_proj.weight',
  'weights/blocks.31.ln.weight', 'attention/blocks.3.attn', 'attention/blocks.30.attn', 'attention/entropy',
  'gradients/norm', 'gradients/normalized', 'eval/animals', 'weights/head.weight',
];
const kept = (text) => {
  const f = makeTagFilter(text, TAGS);
  return TAGS.filter((t) => f.test(t));
};

test('a module path selects its subtree, not its numeric neighbours', () => {
  assert.deepEqual(kept('blocks.3'), [
    'weights/blocks.3.attn.q_proj.weight', 'weights/blocks.3.mlp.fc.weight', 'attention/blocks.3.attn',
  ]);
  assert.equal(makeTagFilter('blocks.3', TAGS).mode, 'path');
  assert.deepEqual(kept('blocks.3/attn'), ['weights/blocks.3.attn.q_proj.weight', 'attention/blocks.3.attn']);
  assert.deepEqual(kept('blocks.3.attn'), kept('blocks.3/attn'));
  assert.deepEqual(kept('weights/blocks.3'), ['weights/blocks.3.attn.q_proj.weight', 'weights/blocks.3.mlp.fc.weight']);
  assert.deepEqual(kept('attention/blocks.30'), ['attention/blocks.30.attn']);
  assert.deepEqual(kept('BLOCKS.3/ATTN'), kept('blocks.3/attn'));
  // The exact tag, not tags it is a prefix of.
  assert.deepEqual(kept('gradients/norm'), ['gradients/norm']);
});

test('a half-typed last component matches the start of components', () => {
  assert.deepEqual(kept('blocks.3/at'), ['weights/blocks.3.attn.q_proj.weight', 'attention/blocks.3.attn']);
  assert.deepEqual(kept('blocks.3/m'), ['weights/blocks.3.mlp.fc.weight']);
});

test('anything else is a case-insensitive regular expression, as documented', () => {
  assert.equal(makeTagFilter('', TAGS), null);
  assert.equal(makeTagFilter('eval', TAGS).mode, 'regex');
  assert.deepEqual(kept('eval'), ['eval/animals']);
  assert.deepEqual(kept('gradients|EVAL'), ['gradients/norm', 'gradients/normalized', 'eval/animals']);
  assert.deepEqual(kept('^attention/'), ['attention/blocks.3.attn', 'attention/blocks.30.attn', 'attention/entropy']);
  // A path that names nothing falls back to the regex ("." is any character).
  assert.equal(makeTagFilter('blocks.3x', TAGS).mode, 'regex');
  assert.deepEqual(kept('s.30'), ['weights/blocks.30.attn.q_proj.weight', 'attention/blocks.30.attn']);
  assert.throws(() => makeTagFilter('blocks[', TAGS), SyntaxError);
});
