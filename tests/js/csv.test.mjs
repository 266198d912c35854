// Unit tests of the export helpers (frontend/csv.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { csvUrl, fileName, joinCsv } from '../../frontend/csv.js';

test('csvUrl encodes run and tag', () => {
  assert.equal(csvUrl('a&b', 'w/1 x'), './csv?run=a%26b&tag=w%2F1+x');
});

test('joinCsv keeps one header and every row', () => {
  const a = 'run,tag,value\nA,t,1\nA,t,2\n';
  const b = 'run,tag,value\nB,t,3';
  assert.equal(joinCsv([a, b]), 'run,tag,value\nA,t,1\nA,t,2\nB,t,3\n');
  assert.equal(joinCsv(['', a]), a);
  assert.equal(joinCsv([]), '');
});

test('fileName keeps a safe subset of characters', () => {
  assert.equal(fileName(['healthy', 'gradients/norm', 'step 30'], 'png'), 'healthy_gradients_norm_step_30.png');
  assert.equal(fileName(['<img src=x>'], 'csv'), 'img_src_x.csv');
  assert.equal(fileName(['../..'], 'csv'), 'chart.csv');
  assert.equal(fileName(['x'.repeat(300)], 'csv').length, 124);
});
