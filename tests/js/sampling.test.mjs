// Unit tests of the sampling note (frontend/sampling.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { estimateLogged, samplingNote, suggestedSamples } from '../../frontend/sampling.js';

test('logged steps are estimated from the span and the logging interval', () => {
  assert.equal(estimateLogged([0, 100, 200, 300]), 4);
  // A sample of steps logged every 25, with no two neighbours kept.
  assert.equal(estimateLogged([0, 50, 125, 400, 975]), 40);
  assert.equal(estimateLogged([10, 30, 70, 90]), 5);
  assert.equal(estimateLogged([5]), 0);
  assert.equal(estimateLogged([]), 0);
});

test('suggested sample counts are round and leave room', () => {
  assert.equal(suggestedSamples(1000), 2000);
  assert.equal(suggestedSamples(2000), 5000);
  assert.equal(suggestedSamples(2600), 10000);
  assert.equal(suggestedSamples(3), 10);
  assert.equal(suggestedSamples(0), 1);
});

test('the note names what was kept and the flag to keep every step', () => {
  assert.equal(samplingNote({ sampled: false, sample_limit: 1000, steps: [0, 1] }), '');
  assert.equal(samplingNote({ steps: [0, 1] }), '');
  assert.equal(samplingNote(null), '');
  const steps = [0, 1, 3, 7, 1999];
  assert.equal(
    samplingNote({ sampled: true, sample_limit: 5, steps }),
    'TensorBoard kept a sample of 5 steps of about 2000 logged; start it with '
      + '--samples_per_plugin torch_visualization=5000 to keep every step.',
  );
  // Without a usable estimate the flag still doubles the limit.
  assert.equal(
    samplingNote({ sampled: true, sample_limit: 1000, steps: [] }),
    'TensorBoard kept a sample of 1000 steps; start it with '
      + '--samples_per_plugin torch_visualization=2000 to keep every step.',
  );
});
