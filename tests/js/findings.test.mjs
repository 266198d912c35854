// Unit tests of the Findings strip's model (frontend/findingsmodel.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  checkedText, countText, decodeFindings, findingTarget, kindTitle, labelList, sortFindings,
  stepText, stripModel,
} from '../../frontend/findingsmodel.js';

const CHECKS = ['vanishing_gradients', 'exploding_gradients', 'nonfinite', 'class_collapse'];

function finding(kind, severity, first, extra = {}) {
  return {
    kind, severity, tag: 'gradients/norm', labels: ['0.weight'], first_step: first, last_step: first + 100,
    message: `${kind} message`, view: { tag: 'gradients/norm', step: first }, ...extra,
  };
}

test('kind titles: known kinds by name, unknown ones in words', () => {
  assert.equal(kindTitle('vanishing_gradients'), 'Vanishing gradients');
  assert.equal(kindTitle('nonfinite'), 'NaN / Inf values');
  assert.equal(kindTitle('weight_decay_off'), 'Weight decay off');
  assert.equal(kindTitle(''), 'Finding');
});

test('checked text lists every check in words, NaN keeps its capitals', () => {
  assert.equal(
    checkedText(CHECKS),
    'checked vanishing gradients, exploding gradients, NaN / Inf values and class collapse',
  );
  assert.equal(checkedText(['dead_units']), 'checked dead units');
  assert.equal(checkedText(['dead_units', 'large_updates']), 'checked dead units and large updates');
  assert.equal(checkedText([]), '');
});

test('labels: the first three, then how many more', () => {
  assert.equal(labelList(['a']), 'a');
  assert.equal(labelList(['a', 'b', 'c']), 'a, b, c');
  assert.equal(labelList(['a', 'b', 'c', 'd', 'e']), 'a, b, c and 2 more');
  assert.equal(labelList(['a', 'b', 'c'], 1), 'a and 2 more');
  assert.equal(labelList([]), '');
});

test('steps: one step or a range', () => {
  assert.equal(stepText(50, 50), 'at step 50');
  assert.equal(stepText(0, 450), 'from step 0 to 450');
  assert.equal(stepText(7, undefined), 'at step 7');
  assert.equal(stepText(undefined, 3), '');
});

test('errors before warnings, then the earliest first step, ties in the server order', () => {
  const sorted = sortFindings([
    finding('large_updates', 'warning', 0),
    finding('class_collapse', 'error', 300),
    finding('vanishing_gradients', 'error', 25),
    finding('dead_units', 'warning', 0, { tag: 'activations/zero_fraction' }),
  ]);
  assert.deepEqual(sorted.map((f) => f.kind), ['vanishing_gradients', 'class_collapse', 'large_updates', 'dead_units']);
  assert.equal(countText(sorted), '2 errors, 2 warnings');
  assert.equal(countText(sorted.slice(0, 1)), '1 error');
  assert.equal(countText([]), '');
});

test('decoding keeps names as text and decodes number fields', () => {
  const body = {
    runs: {
      r: [{
        kind: 'nonfinite', severity: 'error', tag: 't', labels: ['NaN', 'fc'], first_step: 3, last_step: 9,
        message: 'NaN in fc', value: 'Infinity', view: { tag: 't', step: 3 },
      }, 'garbage'],
      empty: [],
    },
    checks: ['nonfinite'],
  };
  const { runs, checks } = decodeFindings(body);
  assert.deepEqual(checks, ['nonfinite']);
  assert.deepEqual(runs.empty, []);
  assert.equal(runs.r.length, 1);
  const f = runs.r[0];
  assert.deepEqual(f.labels, ['NaN', 'fc']);
  assert.equal(f.value, Infinity);
  assert.equal(f.message, 'NaN in fc');
  // An unknown severity is not an error.
  assert.equal(decodeFindings({ runs: { r: [{ kind: 'k', severity: 'fatal' }] } }).runs.r[0].severity, 'warning');
  assert.deepEqual(decodeFindings(null), { runs: {}, checks: [] });
});

test('a finding leads to its tag at its step, or to the over-time view', () => {
  const atStep = findingTarget('vanishing', finding('vanishing_gradients', 'error', 25));
  assert.deepEqual(atStep, {
    run: 'vanishing', tag: 'gradients/norm', overtime: false, step: 25, labels: ['0.weight'], log: true,
  });
  const over = findingTarget('r', finding('dead_units', 'warning', 0, {
    tag: 'activations/zero_fraction', view: { tag: 'activations/zero_fraction', view: 'overtime' },
  }));
  assert.equal(over.overtime, true);
  assert.equal(over.step, undefined);
  assert.equal(over.log, false);
  // No view: the finding's own tag at its first step.
  const bare = findingTarget('r', { ...finding('class_collapse', 'error', 40), view: null, tag: 'outputs/classes' });
  assert.equal(bare.tag, 'outputs/classes');
  assert.equal(bare.step, 40);
});

test('strip: nothing found anywhere says what was checked', () => {
  const results = new Map([
    ['a', { status: 'ready', findings: [] }],
    ['b', { status: 'ready', findings: [] }],
  ]);
  const model = stripModel({ runs: ['a', 'b'], results, checks: CHECKS });
  assert.equal(model.status, 'clean');
  assert.equal(model.groups.length, 0);
  assert.equal(
    model.headline,
    'No problems found in 2 runs: checked vanishing gradients, exploding gradients, NaN / Inf values and class collapse.',
  );
  const one = stripModel({ runs: ['a'], results, checks: ['dead_units'] });
  assert.equal(one.headline, 'No problems found in a: checked dead units.');
});

test('strip: findings per run by severity, clean and pending runs said so', () => {
  const results = new Map([
    ['healthy', { status: 'ready', findings: [] }],
    ['vanishing', {
      status: 'ready',
      findings: [finding('class_collapse', 'warning', 0), finding('vanishing_gradients', 'error', 0, {
        labels: ['0.weight', '2.weight', '4.weight', '6.weight'],
      })],
    }],
  ]);
  const model = stripModel({ runs: ['healthy', 'slow', 'vanishing'], results, checks: CHECKS });
  assert.equal(model.status, 'found');
  assert.equal(model.worst, 'error');
  assert.equal(model.headline, '1 error, 1 warning in 1 of 3 runs (still checking…)');
  assert.deepEqual(model.groups.map((g) => [g.run, g.status, g.note]), [
    ['healthy', 'ready', 'no problems found'],
    ['slow', 'loading', 'checking…'],
    ['vanishing', 'ready', ''],
  ]);
  const [first, second] = model.groups[2].items;
  assert.equal(first.title, 'Vanishing gradients');
  assert.equal(first.where, '0.weight, 2.weight, 4.weight and 1 more');
  assert.equal(first.steps, 'from step 0 to 100');
  assert.equal(first.target.run, 'vanishing');
  assert.equal(second.kind, 'class_collapse');
  assert.notEqual(first.key, second.key);
  assert.equal(model.groups[2].counts, '1 error, 1 warning');
});

test('strip: loading, failed and empty selections', () => {
  assert.equal(stripModel({ runs: [], results: new Map(), checks: CHECKS }).status, 'none');
  const loading = stripModel({ runs: ['a', 'b'], results: new Map(), checks: [] });
  assert.equal(loading.status, 'loading');
  assert.equal(loading.headline, 'Checking 2 runs for problems…');
  const failed = stripModel({
    runs: ['a'], results: new Map([['a', { status: 'error', error: 'run "a" not found' }]]), checks: [],
  });
  assert.equal(failed.status, 'loading');
  assert.equal(failed.headline, 'Could not check a.');
  assert.equal(failed.groups[0].note, 'could not be checked: run "a" not found');
  // A run that failed is not reported as clean.
  const mixed = stripModel({
    runs: ['a', 'b'],
    results: new Map([['a', { status: 'error', error: 'x' }], ['b', { status: 'ready', findings: [] }]]),
    checks: [],
  });
  assert.equal(mixed.headline, 'Could not check 1 of 2 runs.');
});

test('a finding highlights the labels it names (a collapse: its one class)', () => {
  const collapse = finding('class_collapse', 'error', 0, { tag: 'eval/confusion', labels: ['7'] });
  assert.deepEqual(findingTarget('r', collapse).labels, ['7']);
  const vanishing = finding('vanishing_gradients', 'error', 0, { labels: ['0.weight', '0.bias'] });
  assert.deepEqual(findingTarget('r', vanishing).labels, ['0.weight', '0.bias']);
});

test('strip: only warnings are the worst severity', () => {
  const results = new Map([['r', { status: 'ready', findings: [finding('dead_units', 'warning', 5)] }]]);
  const model = stripModel({ runs: ['r'], results, checks: CHECKS });
  assert.equal(model.worst, 'warning');
  assert.equal(model.headline, '1 warning in r');
});
