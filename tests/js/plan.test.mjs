// Unit tests of the card plan (frontend/plan.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { cardKey, naturalCompare, planCards } from '../../frontend/plan.js';

const runs = {
  run10: {
    'grad': { kind: 'bars' },
    'w': { kind: 'heatmap' },
    'cm': { kind: 'confusion' },
  },
  run2: {
    'grad': { kind: 'bars' },
    'out': { kind: 'pie' },
    'pts': { kind: 'scatter' },
    'odd': { kind: 'future-kind' },
  },
};
const all = new Set(['run2', 'run10']);
const specs = (plan, kind) => plan.sections.get(kind).map((s) => [s.type, s.tag, s.run || s.runs.join('+')]);

test('steps view: one step card per run and tag, same tags side by side', () => {
  const plan = planCards({ runs, selected: all, filter: null, view: 'steps' });
  assert.deepEqual(specs(plan, 'bars'), [['step', 'grad', 'run2'], ['step', 'grad', 'run10']]);
  assert.equal(plan.total, 6);
  assert.equal(plan.tagsSeen, 7);
  assert.equal(plan.hidden, 0);
});

test('the filter and the run selection narrow the plan', () => {
  const plan = planCards({ runs, selected: new Set(['run2']), filter: /^(grad|pts)$/, view: 'steps' });
  assert.equal(plan.total, 2);
  assert.deepEqual(specs(plan, 'scatter'), [['step', 'pts', 'run2']]);
});

test('overtime view: bars and pies only, the rest counted as hidden', () => {
  const plan = planCards({ runs, selected: all, filter: null, view: 'overtime' });
  assert.deepEqual(specs(plan, 'bars'), [['series', 'grad', 'run2'], ['series', 'grad', 'run10']]);
  assert.deepEqual(specs(plan, 'pie'), [['series', 'out', 'run2']]);
  assert.equal(plan.total, 3);
  assert.equal(plan.hidden, 3);
});

test('compare view: one card per tag with every run; other kinds stay per run', () => {
  const plan = planCards({ runs, selected: all, filter: null, view: 'compare' });
  assert.deepEqual(specs(plan, 'bars'), [['compare', 'grad', 'run2+run10']]);
  assert.deepEqual(specs(plan, 'confusion'), [['step', 'cm', 'run10']]);
  const grad = plan.sections.get('bars')[0];
  assert.deepEqual(Object.keys(grad.metas), ['run2', 'run10']);
  assert.deepEqual(grad.absent, []);
  assert.equal(grad.key, cardKey('compare', ['run2', 'run10', ''], 'grad'));
  // A selected run without the tag is listed, for an empty panel.
  const w = plan.sections.get('heatmap')[0];
  assert.deepEqual([w.runs, w.absent], [['run10'], ['run2']]);
  const alone = planCards({ runs, selected: new Set(['run10']), filter: null, view: 'compare' });
  assert.deepEqual(alone.sections.get('heatmap')[0].absent, []);
  assert.notEqual(alone.sections.get('heatmap')[0].key, w.key);
  assert.equal(plan.total, 5);
});

test('keys differ by view, runs and tag', () => {
  const keys = new Set([
    cardKey('step', ['a'], 'b'), cardKey('series', ['a'], 'b'), cardKey('step', ['a', 'b'], ''),
    cardKey('compare', ['a'], 'b'),
  ]);
  assert.equal(keys.size, 4);
  assert.ok(naturalCompare('run2', 'run10') < 0);
});
