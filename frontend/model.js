/**
 * Talks to the plugin's routes (docs/http_api.md). URLs are relative: the
 * tab's iframe has its base at /data/plugin/torch_visualization/.
 */

const NON_FINITE = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

/**
 * Turns the server's non-finite encoding back into numbers: the strings
 * "NaN", "Infinity" and "-Infinity" become NaN, Infinity and -Infinity, at
 * any depth of nested arrays/objects. Other values pass through unchanged.
 *
 * Apply it to number fields only: a class named "NaN" must stay a string.
 * @param {*} value
 * @returns {*}
 */
export function decodeNonFinite(value) {
  if (Array.isArray(value)) return value.map(decodeNonFinite);
  if (typeof value === 'string') {
    return Object.prototype.hasOwnProperty.call(NON_FINITE, value) ? NON_FINITE[value] : value;
  }
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = decodeNonFinite(v);
    return out;
  }
  return value;
}

/**
 * GETs JSON. On an HTTP error throws an Error whose message is the server's
 * response text (the plugin's 400/404 bodies name what was wrong), with
 * `status` set.
 * @param {string} url
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<*>}
 */
export async function fetchJson(url, options = {}) {
  const res = await fetch(url, { signal: options.signal, headers: { Accept: 'application/json' } });
  if (!res.ok) {
    let text = '';
    try {
      text = (await res.text()).trim();
    } catch (_) {
      // The body is optional; the status line still explains the failure.
    }
    const err = new Error(text || `HTTP ${res.status} ${res.statusText}`.trim());
    err.status = res.status;
    throw err;
  }
  return res.json();
}

/**
 * Lists runs and tags: { runs: { run: { tag: {kind, labels, ...} } } }.
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<Object>}
 */
export async function fetchTags(options) {
  const body = await fetchJson('./tags', options);
  return { runs: (body && body.runs) || {} };
}

/**
 * Builds the data route's URL for one run, tag and (optional) step.
 * @param {string} run
 * @param {string} tag
 * @param {number} [step] latest step when omitted
 * @returns {string}
 */
export function dataUrl(run, tag, step) {
  const q = new URLSearchParams({ run, tag });
  if (step !== undefined && step !== null) q.set('step', String(step));
  return `./data?${q}`;
}

/**
 * Fetches one step of one chart, with `values` and `wall_time` decoded
 * (see decodeNonFinite); labels and names are left as the user wrote them.
 * @param {string} run
 * @param {string} tag
 * @param {number} [step]
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<Object>}
 */
export async function fetchData(run, tag, step, options) {
  const body = await fetchJson(dataUrl(run, tag, step), options);
  return {
    ...body,
    values: decodeNonFinite(body.values ?? []),
    wall_time: decodeNonFinite(body.wall_time),
    labels: body.labels ?? [],
    stat_names: body.stat_names ?? [],
    steps: body.steps ?? [],
    shape: body.shape ?? [],
  };
}

/**
 * Fetches every held step of one pie, bars or confusion tag (/series), with
 * `values` and `wall_times` decoded.
 * @param {string} run
 * @param {string} tag
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<Object>}
 */
export async function fetchSeries(run, tag, options) {
  const body = await fetchJson(`./series?${new URLSearchParams({ run, tag })}`, options);
  return {
    ...body,
    values: decodeNonFinite(body.values ?? []),
    wall_times: decodeNonFinite(body.wall_times ?? []),
    labels: body.labels ?? [],
    stat_names: body.stat_names ?? [],
    steps: body.steps ?? [],
  };
}

/**
 * GETs a text body (the CSV export). Errors as fetchJson: the server's text.
 * @param {string} url
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<string>}
 */
export async function fetchText(url, options = {}) {
  const res = await fetch(url, { signal: options.signal });
  const text = await res.text();
  if (!res.ok) {
    const err = new Error(text.trim() || `HTTP ${res.status} ${res.statusText}`.trim());
    err.status = res.status;
    throw err;
  }
  return text;
}
