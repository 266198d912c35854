/**
 * The tab's state in TensorBoard's URL, so that a reload (or a shared link)
 * opens the same runs, filter and view.
 *
 * TensorBoard keeps its state in the hash: `#<plugin>&key=value&...`, each
 * key and value URI-encoded, and hands plugins the entries named
 * `p.<plugin>.<key>` (GetURLPluginData). The tab's iframe is same-origin, so
 * it reads and writes those entries in the parent's hash directly, with
 * history.replaceState: no navigation, no new history entry, and
 * TensorBoard's own entries are kept.
 *
 * The encode/decode/merge functions are pure (tests/js/urlstate.test.mjs);
 * readState/writeState take the window so tests can pass a fake one.
 */

export const PLUGIN_NAME = 'torch_visualization';

/** View modes of the tab. */
export const VIEWS = Object.freeze(['steps', 'overtime', 'compare']);

/** The state a fresh tab starts with. */
export const DEFAULT_STATE = Object.freeze({
  runs: null, // null: every run; else the selected run names
  filter: '',
  view: 'steps',
  diff: null, // [runA, runB] of the compare difference, null: the first two
  link: false, // step sliders move together
});

/**
 * Splits a hash ("#a&b=c") into its parts, decoding keys and values.
 * @param {string} hash
 * @returns {{key: string, value: string|null, raw: string}[]} value null for
 *   a part without "=" (TensorBoard's active-plugin part)
 */
export function parseHash(hash) {
  const body = String(hash || '').replace(/^#/, '');
  if (!body) return [];
  return body.split('&').filter(Boolean).map((raw) => {
    const eq = raw.indexOf('=');
    if (eq < 0) return { key: safeDecode(raw), value: null, raw };
    return { key: safeDecode(raw.slice(0, eq)), value: safeDecode(raw.slice(eq + 1)), raw };
  });
}

/**
 * The plugin's own entries of a hash, with the `p.<plugin>.` prefix removed.
 * @param {string} hash
 * @param {string} [plugin]
 * @returns {Object<string, string>}
 */
export function pluginEntries(hash, plugin = PLUGIN_NAME) {
  const prefix = `p.${plugin}.`;
  const out = {};
  for (const { key, value } of parseHash(hash)) {
    if (value !== null && key.startsWith(prefix)) out[key.slice(prefix.length)] = value;
  }
  return out;
}

/**
 * `hash` with the plugin's entries replaced by `entries` (other parts kept
 * as they were, in order; the plugin's entries go last).
 * @param {string} hash
 * @param {Object<string, string>} entries
 * @param {string} [plugin]
 * @returns {string} starts with "#" (or is "" when nothing is left)
 */
export function mergeHash(hash, entries, plugin = PLUGIN_NAME) {
  const prefix = `p.${plugin}.`;
  const kept = parseHash(hash)
    .filter(({ key, value }) => value === null || !key.startsWith(prefix))
    .map(({ raw }) => raw);
  if (!kept.length) kept.push(encodeURIComponent(plugin));
  const ours = Object.keys(entries).sort().map(
    (k) => `${encodeURIComponent(prefix + k)}=${encodeURIComponent(entries[k])}`,
  );
  const parts = [...kept, ...ours];
  return parts.length ? `#${parts.join('&')}` : '';
}

/**
 * URL entries of a state; defaults are left out so the URL stays short.
 * @param {typeof DEFAULT_STATE} state
 * @returns {Object<string, string>}
 */
export function encodeState(state) {
  const out = {};
  if (Array.isArray(state.runs)) out.runs = JSON.stringify(state.runs);
  if (state.filter) out.filter = state.filter;
  if (state.view && state.view !== DEFAULT_STATE.view) out.view = state.view;
  if (Array.isArray(state.diff) && state.diff.length === 2) out.diff = JSON.stringify(state.diff);
  if (state.link) out.link = '1';
  return out;
}

/**
 * The state in URL entries. Anything malformed (hand-edited URLs, old
 * versions) falls back to the default for that field.
 * @param {Object<string, string>} entries
 * @returns {typeof DEFAULT_STATE}
 */
export function decodeState(entries) {
  const state = { ...DEFAULT_STATE };
  const runs = parseJson(entries.runs);
  if (Array.isArray(runs) && runs.every((r) => typeof r === 'string')) state.runs = runs;
  if (typeof entries.filter === 'string') state.filter = entries.filter;
  if (VIEWS.includes(entries.view)) state.view = entries.view;
  const diff = parseJson(entries.diff);
  if (Array.isArray(diff) && diff.length === 2 && diff.every((r) => typeof r === 'string')) state.diff = diff;
  state.link = entries.link === '1';
  return state;
}

/**
 * The window whose hash holds TensorBoard's state: the parent when it is
 * reachable (same origin), else this window (the tab opened on its own).
 * @param {Window} win
 * @returns {Window}
 */
export function stateWindow(win) {
  try {
    const parent = win.parent;
    if (parent && parent !== win && typeof parent.location.hash === 'string') return parent;
  } catch (_) {
    // Cross-origin parent: reading its location throws; use our own URL.
  }
  return win;
}

/**
 * Reads the tab's state from the URL.
 * @param {Window} win
 * @returns {typeof DEFAULT_STATE}
 */
export function readState(win) {
  return decodeState(pluginEntries(stateWindow(win).location.hash));
}

/**
 * Writes the tab's state into the URL without navigating.
 * @param {Window} win
 * @param {typeof DEFAULT_STATE} state
 * @returns {boolean} whether the URL changed
 */
export function writeState(win, state) {
  const target = stateWindow(win);
  const hash = mergeHash(target.location.hash, encodeState(state));
  if (hash === target.location.hash) return false;
  const url = new URL(target.location.href);
  url.hash = hash;
  try {
    target.history.replaceState(target.history.state, '', url.toString());
    return true;
  } catch (_) {
    // A sandboxed or locked-down host: the state just is not kept.
    return false;
  }
}

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch (_) {
    return s;
  }
}

function parseJson(text) {
  if (typeof text !== 'string') return undefined;
  try {
    return JSON.parse(text);
  } catch (_) {
    return undefined;
  }
}
