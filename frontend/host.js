/**
 * The message channel between the tab's iframe and TensorBoard.
 *
 * TensorBoard's dynamic-plugin host listens for the window message
 * "experimental.bootstrap" carrying a MessagePort; both sides then exchange
 * JSON strings `{type, id, payload, error, isReply}` over it. The host
 * broadcasts "experimental.DataReloaded" when it reloads (its reload button,
 * its auto-reload timer) and expects a reply to every request, as we must
 * reply to its requests. We can ask it "experimental.GetURLPluginData"
 * (our `p.torch_visualization.*` hash entries) and "experimental.GetRuns".
 *
 * `createIpc` is the protocol without any DOM (tests/js/host.test.mjs);
 * `connectHost` wires it to a real MessageChannel.
 */

export const MESSAGES = Object.freeze({
  DATA_RELOADED: 'experimental.DataReloaded',
  GET_URL_DATA: 'experimental.GetURLPluginData',
  GET_RUNS: 'experimental.GetRuns',
  RUNS_CHANGED: 'experimental.RunsChanged',
});

/**
 * The protocol core.
 * @param {function(string): void} post sends one serialized message
 * @returns {{handle: function(string): Promise<void>,
 *   listen: function(string, Function): void,
 *   request: function(string, *, number=): Promise<*>,
 *   close: function(): void}}
 */
export function createIpc(post) {
  const listeners = new Map();
  const pending = new Map(); // id -> {resolve, reject, timer}
  let nextId = 1;
  let closed = false;

  const send = (message) => {
    if (!closed) post(JSON.stringify(message));
  };

  return {
    /** Handles one message string from the host. */
    async handle(raw) {
      let message;
      try {
        message = JSON.parse(raw);
      } catch (_) {
        return; // Not ours (or garbled): nothing to answer.
      }
      if (!message || typeof message.type !== 'string') return;
      const { type, id } = message;
      if (message.isReply) {
        const waiter = pending.get(id);
        if (!waiter) return;
        pending.delete(id);
        clearTimeout(waiter.timer);
        if (message.error) waiter.reject(new Error(String(message.error)));
        else waiter.resolve(message.payload);
        return;
      }
      let payload = null;
      let error = null;
      const listener = listeners.get(type);
      if (listener) {
        try {
          const result = await listener(message.payload);
          payload = result === undefined ? null : result;
        } catch (err) {
          error = String((err && err.message) || err);
        }
      }
      // The host waits for an answer to every message, known or not.
      send({ type, id, payload, error, isReply: true });
    },

    /** Calls `fn(payload)` for each host message of `type` (one per type). */
    listen(type, fn) {
      listeners.set(type, fn);
    },

    /**
     * Sends a request; resolves with the reply's payload, rejects on an
     * error reply or after `timeoutMs` without one.
     */
    request(type, payload = null, timeoutMs = 5000) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`no reply to ${type} within ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, { resolve, reject, timer });
        send({ type, id, payload, error: null, isReply: false });
      });
    },

    /** Stops answering; pending requests are rejected. */
    close() {
      closed = true;
      for (const [, waiter] of pending) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error('channel closed'));
      }
      pending.clear();
    },
  };
}

/**
 * Opens the channel to TensorBoard when the tab runs inside it.
 * @param {Window} win
 * @returns {ReturnType<typeof createIpc>|null} null outside an iframe
 */
export function connectHost(win = window) {
  if (!win.parent || win.parent === win) return null;
  const channel = new MessageChannel();
  const ipc = createIpc((text) => channel.port1.postMessage(text));
  channel.port1.addEventListener('message', (event) => ipc.handle(event.data));
  channel.port1.start();
  win.parent.postMessage('experimental.bootstrap', '*', [channel.port2]);
  const close = ipc.close;
  ipc.close = () => {
    close();
    channel.port1.close();
  };
  return ipc;
}
