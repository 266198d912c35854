// Unit tests of the URL state (frontend/urlstate.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  DEFAULT_STATE, decodeState, encodeState, mergeHash, parseHash, pluginEntries, readState,
  stateWindow, writeState,
} from '../../frontend/urlstate.js';

test('parseHash decodes keys and values and keeps the plugin part', () => {
  assert.deepEqual(parseHash('#torch_visualization&a%20b=c%26d'), [
    { key: 'torch_visualization', value: null, raw: 'torch_visualization' },
    { key: 'a b', value: 'c&d', raw: 'a%20b=c%26d' },
  ]);
  assert.deepEqual(parseHash(''), []);
  // A broken escape does not throw.
  assert.equal(parseHash('#x=%E0%A4%A')[0].value, '%E0%A4%A');
});

test('pluginEntries returns our entries without the prefix', () => {
  const hash = '#torch_visualization&p.torch_visualization.view=compare&p.other.view=x&smoothing=0.6';
  assert.deepEqual(pluginEntries(hash), { view: 'compare' });
});

test('mergeHash replaces our entries and keeps TensorBoard\'s', () => {
  const hash = '#torch_visualization&smoothing=0.6&p.torch_visualization.view=compare';
  const out = mergeHash(hash, { filter: 'a&b=c #d', view: 'overtime' });
  assert.equal(out, '#torch_visualization&smoothing=0.6'
    + '&p.torch_visualization.filter=a%26b%3Dc%20%23d&p.torch_visualization.view=overtime');
  assert.deepEqual(pluginEntries(out), { filter: 'a&b=c #d', view: 'overtime' });
  assert.equal(mergeHash('', {}), '#torch_visualization');
  assert.equal(mergeHash('#scalars', {}), '#scalars');
});

test('encodeState leaves defaults out; decodeState round-trips', () => {
  assert.deepEqual(encodeState(DEFAULT_STATE), {});
  const state = { runs: ['a,b', 'c"d'], filter: 'weights/.*', view: 'compare', diff: ['x', 'y'], link: true };
  const entries = encodeState(state);
  assert.deepEqual(decodeState(entries), state);
  assert.deepEqual(decodeState(pluginEntries(mergeHash('#torch_visualization', entries))), state);
  // An empty selection is a selection (not "all runs").
  assert.deepEqual(decodeState(encodeState({ ...DEFAULT_STATE, runs: [] })).runs, []);
});

test('decodeState ignores malformed entries', () => {
  const s = decodeState({ runs: '{not json', view: 'nope', diff: '["only one"]', link: 'yes', filter: 'x' });
  assert.deepEqual(s, { ...DEFAULT_STATE, filter: 'x' });
  assert.equal(decodeState({ runs: '[1, 2]' }).runs, null);
});

function fakeWindow(href, parent) {
  const win = {
    location: new URL(href),
    history: {
      state: { keep: 1 },
      replaceState(state, _title, url) {
        this.calls = (this.calls || 0) + 1;
        win.location = new URL(url);
        this.state = state;
      },
    },
  };
  win.parent = parent || win;
  return win;
}

test('readState/writeState use the parent window\'s hash, without navigating', () => {
  const parent = fakeWindow('http://h:6006/?x=1#torch_visualization&smoothing=0.6');
  const frame = fakeWindow('http://h:6006/data/plugin_entry.html?name=torch_visualization', parent);
  assert.equal(stateWindow(frame), parent);
  assert.ok(writeState(frame, { ...DEFAULT_STATE, view: 'overtime', runs: ['healthy'] }));
  assert.equal(parent.location.search, '?x=1');
  assert.match(parent.location.hash, /^#torch_visualization&smoothing=0\.6&p\.torch_visualization\.runs=/);
  assert.deepEqual(parent.history.state, { keep: 1 });
  assert.deepEqual(readState(frame), { ...DEFAULT_STATE, view: 'overtime', runs: ['healthy'] });
  // Same state again: no history call.
  assert.equal(writeState(frame, { ...DEFAULT_STATE, view: 'overtime', runs: ['healthy'] }), false);
  assert.equal(parent.history.calls, 1);
});

test('a cross-origin parent falls back to the frame\'s own URL', () => {
  const frame = fakeWindow('http://h/x#p.torch_visualization.view=compare');
  frame.parent = { get location() { throw new Error('SecurityError'); } };
  assert.equal(stateWindow(frame), frame);
  assert.equal(readState(frame).view, 'compare');
});
