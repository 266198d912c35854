// Unit tests of the fetch helpers (frontend/model.js) with a stubbed fetch.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import {
  dataUrl, decodeNonFinite, fetchData, fetchJson, fetchSeries, fetchTags, fetchText,
} from '../../frontend/model.js';

const realFetch = globalThis.fetch;
afterEach(() => {
  globalThis.fetch = realFetch;
});

function stubFetch(status, body) {
  const calls = [];
  globalThis.fetch = async (url) => {
    calls.push(url);
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return new Response(text, { status, headers: { 'Content-Type': 'application/json' } });
  };
  return calls;
}

test('decodeNonFinite turns the string encoding back into numbers, recursively', () => {
  const out = decodeNonFinite([[1, 'NaN'], ['Infinity', ['-Infinity', 2.5]]]);
  assert.ok(Number.isNaN(out[0][1]));
  assert.equal(out[1][0], Infinity);
  assert.equal(out[1][1][0], -Infinity);
  assert.equal(out[1][1][1], 2.5);
  assert.equal(out[0][0], 1);
  assert.deepEqual(decodeNonFinite({ a: ['Infinity'], b: 'x' }), { a: [Infinity], b: 'x' });
  assert.equal(decodeNonFinite('nan'), 'nan'); // only the exact spellings
  assert.equal(decodeNonFinite(null), null);
});

test('dataUrl encodes run and tag and adds the step only when given', () => {
  assert.equal(dataUrl('a b', 'w/fc1&x', 30), './data?run=a+b&tag=w%2Ffc1%26x&step=30');
  assert.equal(dataUrl('r', 't'), './data?run=r&tag=t');
  assert.equal(dataUrl('r', 't', 0), './data?run=r&tag=t&step=0');
});

test('fetchJson throws with the server text on HTTP errors', async () => {
  stubFetch(404, 'No step 7 for run "a", tag "w"');
  await assert.rejects(fetchJson('./data?run=a&tag=w&step=7'), (err) => {
    assert.equal(err.message, 'No step 7 for run "a", tag "w"');
    assert.equal(err.status, 404);
    return true;
  });
  stubFetch(500, '');
  await assert.rejects(fetchJson('./x'), /HTTP 500/);
});

test('fetchData decodes values but leaves labels named "NaN" alone', async () => {
  const calls = stubFetch(200, {
    run: 'a', tag: 'p', kind: 'pie', labels: ['NaN', 'Infinity'], stat_names: [],
    step: 3, wall_time: 12.5, shape: [2], values: ['NaN', 1], nonfinite: 1, steps: [1, 3],
  });
  const d = await fetchData('a', 'p', 3);
  assert.deepEqual(calls, ['./data?run=a&tag=p&step=3']);
  assert.deepEqual(d.labels, ['NaN', 'Infinity']);
  assert.ok(Number.isNaN(d.values[0]));
  assert.equal(d.values[1], 1);
  assert.deepEqual(d.steps, [1, 3]);
  assert.equal(d.wall_time, 12.5);
});

test('fetchTags returns the runs mapping (empty when absent)', async () => {
  stubFetch(200, { runs: { a: { t: { kind: 'bars' } } } });
  assert.deepEqual(await fetchTags(), { runs: { a: { t: { kind: 'bars' } } } });
  stubFetch(200, {});
  assert.deepEqual(await fetchTags(), { runs: {} });
});

test('fetchSeries asks /series and decodes every step\'s values', async () => {
  const calls = stubFetch(200, {
    run: 'a b', tag: 'g/n', kind: 'bars', labels: ['NaN'], stat_names: [],
    steps: [0, 5], wall_times: [1.5, 'NaN'], values: [[1, 'Infinity'], ['-Infinity', 'NaN']],
  });
  const s = await fetchSeries('a b', 'g/n');
  assert.deepEqual(calls, ['./series?run=a+b&tag=g%2Fn']);
  assert.deepEqual(s.labels, ['NaN']);
  assert.deepEqual(s.steps, [0, 5]);
  assert.equal(s.values[0][1], Infinity);
  assert.equal(s.values[1][0], -Infinity);
  assert.ok(Number.isNaN(s.values[1][1]));
  assert.ok(Number.isNaN(s.wall_times[1]));
});

test('fetchText returns the body, or throws with the server text', async () => {
  stubFetch(200, 'run,tag\na,b\n');
  assert.equal(await fetchText('./csv?run=a&tag=b'), 'run,tag\na,b\n');
  stubFetch(400, 'the series route serves pie, bars and confusion tags');
  await assert.rejects(fetchText('./csv?run=a&tag=b'), (err) => {
    assert.match(err.message, /series route/);
    assert.equal(err.status, 400);
    return true;
  });
});
