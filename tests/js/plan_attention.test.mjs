// The attention kind in the card plan (frontend/plan.js): its own section,
// step cards per run, no over-time or compare picture. Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { COMPARE_KINDS, OVERTIME_KINDS, planCards, SECTIONS } from '../../frontend/plan.js';

const runs = {
  a: { 'attention/blocks.0.attn': { kind: 'attention' }, 'attention/entropy': { kind: 'bars' } },
  b: { 'attention/blocks.0.attn': { kind: 'attention' } },
};
const all = new Set(['a', 'b']);

test('attention tags get their own section of step cards, one per run', () => {
  assert.ok(SECTIONS.some(([kind]) => kind === 'attention'));
  for (const view of ['steps', 'compare']) {
    const plan = planCards({ runs, selected: all, filter: null, view });
    assert.deepEqual(plan.sections.get('attention').map((s) => [s.type, s.run]), [['step', 'a'], ['step', 'b']]);
  }
  assert.ok(!COMPARE_KINDS.includes('attention') && !OVERTIME_KINDS.includes('attention'));
});

test('the over-time view counts attention tags as hidden', () => {
  const plan = planCards({ runs, selected: all, filter: null, view: 'overtime' });
  assert.equal(plan.sections.get('attention').length, 0);
  assert.equal(plan.hidden, 2);
  assert.equal(plan.total, 1);
});

test('a filter object with test() (grouping.makeTagFilter) narrows the plan', () => {
  const filter = { test: (tag) => tag.startsWith('attention/blocks.') };
  const plan = planCards({ runs, selected: all, filter, view: 'steps' });
  assert.equal(plan.total, 2);
  assert.equal(plan.sections.get('bars').length, 0);
});
