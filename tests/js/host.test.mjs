// Unit tests of the TensorBoard message protocol (frontend/host.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createIpc, MESSAGES } from '../../frontend/host.js';

function harness() {
  const sent = [];
  const ipc = createIpc((text) => sent.push(JSON.parse(text)));
  return { ipc, sent };
}

test('a DataReloaded broadcast calls the listener and is answered', async () => {
  const { ipc, sent } = harness();
  let calls = 0;
  ipc.listen(MESSAGES.DATA_RELOADED, () => {
    calls += 1;
  });
  // The host sends payload undefined, which JSON drops.
  await ipc.handle(JSON.stringify({ type: MESSAGES.DATA_RELOADED, id: 7, isReply: false }));
  assert.equal(calls, 1);
  assert.deepEqual(sent, [{ type: MESSAGES.DATA_RELOADED, id: 7, payload: null, error: null, isReply: true }]);
});

test('unknown messages are answered too; a throwing listener answers with its error', async () => {
  const { ipc, sent } = harness();
  ipc.listen('boom', () => {
    throw new Error('bad');
  });
  await ipc.handle(JSON.stringify({ type: 'nobody', id: 1, payload: 3, isReply: false }));
  await ipc.handle(JSON.stringify({ type: 'boom', id: 2, payload: null, isReply: false }));
  assert.deepEqual(sent.map((m) => [m.type, m.id, m.error, m.isReply]), [
    ['nobody', 1, null, true],
    ['boom', 2, 'bad', true],
  ]);
});

test('request resolves with the reply payload, matched by id', async () => {
  const { ipc, sent } = harness();
  const p1 = ipc.request(MESSAGES.GET_URL_DATA, { pluginName: 'torch_visualization' });
  const p2 = ipc.request(MESSAGES.GET_RUNS);
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[0].payload, { pluginName: 'torch_visualization' });
  assert.equal(sent[0].isReply, false);
  assert.notEqual(sent[0].id, sent[1].id);
  await ipc.handle(JSON.stringify({ type: MESSAGES.GET_RUNS, id: sent[1].id, payload: ['a'], error: null, isReply: true }));
  await ipc.handle(JSON.stringify({ type: MESSAGES.GET_URL_DATA, id: sent[0].id, payload: { view: 'compare' }, error: null, isReply: true }));
  assert.deepEqual(await p1, { view: 'compare' });
  assert.deepEqual(await p2, ['a']);
  // A reply is never answered.
  assert.equal(sent.length, 2);
});

test('request rejects on an error reply, on timeout, and on close', async () => {
  const { ipc, sent } = harness();
  const p = ipc.request('x');
  await ipc.handle(JSON.stringify({ type: 'x', id: sent[0].id, payload: null, error: 'nope', isReply: true }));
  await assert.rejects(p, /nope/);
  await assert.rejects(ipc.request('slow', null, 10), /no reply/);
  const q = ipc.request('y');
  ipc.close();
  await assert.rejects(q, /closed/);
  const before = sent.length;
  await ipc.handle(JSON.stringify({ type: 'z', id: 1, isReply: false }));
  assert.equal(sent.length, before); // closed: silent
});

test('garbage is ignored', async () => {
  const { ipc, sent } = harness();
  await ipc.handle('not json');
  await ipc.handle(JSON.stringify(42));
  await ipc.handle(JSON.stringify({ id: 1 }));
  assert.deepEqual(sent, []);
});
