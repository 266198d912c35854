/**
 * What the Findings strip says, pure (tests/js/findings.test.mjs): the
 * /findings response decoded, each run's findings ordered (errors first),
 * the layers and steps named in a line, the "nothing found" sentence, and
 * where a click on a finding leads (run, tag, step or over-time view,
 * labels to highlight). findings.js puts it on the page.
 */

import { decodeNonFinite } from './model.js';

/** Titles of the kinds the engine knows (docs/http_api.md, /findings). */
export const KIND_TITLES = Object.freeze({
  vanishing_gradients: 'Vanishing gradients',
  exploding_gradients: 'Exploding gradients',
  nonfinite: 'NaN / Inf values',
  dead_units: 'Dead units',
  frozen_parameters: 'Frozen parameters',
  large_updates: 'Large updates',
  class_collapse: 'Class collapse',
  loss_divergence: 'Loss divergence',
  attention_collapse: 'Attention collapse',
  activation_outliers: 'Activation outliers',
});

const SEVERITY_RANK = { error: 0, warning: 1 };
// Fields of a finding that hold text: never decoded (a layer may be "NaN").
const TEXT_FIELDS = new Set(['kind', 'severity', 'tag', 'labels', 'message', 'view']);
// Kinds whose values span orders of magnitude: their bars read on a log scale.
const LOG_KINDS = new Set(['vanishing_gradients', 'exploding_gradients', 'large_updates']);

/**
 * The title of a finding kind; an unknown kind (a newer server) is its
 * name in words ("weight_decay_off" -> "Weight decay off").
 * @param {string} kind
 * @returns {string}
 */
export function kindTitle(kind) {
  if (Object.prototype.hasOwnProperty.call(KIND_TITLES, kind)) return KIND_TITLES[kind];
  const words = String(kind).replace(/_/g, ' ').trim();
  return words ? words[0].toUpperCase() + words.slice(1) : 'Finding';
}

/**
 * The checks a server ran, as a sentence part: "checked vanishing
 * gradients, exploding gradients and class collapse".
 * @param {string[]} checks kinds
 * @returns {string} "" when no check is listed
 */
export function checkedText(checks) {
  const names = (checks || []).map((kind) => {
    const title = kindTitle(kind);
    // "NaN / Inf values" keeps its capitals; the others read lower-case.
    return /^[A-Z][a-z]*\b/.test(title) ? title[0].toLowerCase() + title.slice(1) : title;
  });
  if (!names.length) return '';
  return `checked ${joinWords(names)}`;
}

/**
 * Names the labels of a finding: the first `max`, then "and N more".
 * @param {string[]} labels most severe first
 * @param {number} [max=3]
 * @returns {string}
 */
export function labelList(labels, max = 3) {
  const names = (labels || []).map(String);
  if (names.length <= max) return names.join(', ');
  return `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

/**
 * The steps of a finding: "at step 50", "from step 0 to 450".
 * @param {number} first
 * @param {number} last
 * @returns {string}
 */
export function stepText(first, last) {
  if (!Number.isFinite(first)) return '';
  if (!Number.isFinite(last) || last === first) return `at step ${first}`;
  return `from step ${first} to ${last}`;
}

/**
 * Errors before warnings, then the earliest first step; ties keep the
 * server's order (its list of checks runs from causes to symptoms).
 * @param {Object[]} findings
 * @returns {Object[]} a sorted copy
 */
export function sortFindings(findings) {
  const rank = (f) => SEVERITY_RANK[f.severity] ?? 2;
  const step = (f) => (Number.isFinite(f.first_step) ? f.first_step : Infinity);
  // Array.prototype.sort is stable: equal keys stay in the server's order.
  return [...(findings || [])].sort((a, b) => rank(a) - rank(b) || step(a) - step(b));
}

/**
 * "2 errors, 1 warning" (errors first; "" for none).
 * @param {Object[]} findings
 * @returns {string}
 */
export function countText(findings) {
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.length - errors;
  const parts = [];
  if (errors) parts.push(`${errors} error${errors === 1 ? '' : 's'}`);
  if (warnings) parts.push(`${warnings} warning${warnings === 1 ? '' : 's'}`);
  return parts.join(', ');
}

/**
 * Normalises a /findings response: each finding with text fields as
 * strings, `labels` a list, steps as numbers (non-finite numbers decoded
 * like the other routes'), severity "error" or "warning".
 * @param {*} body the parsed JSON
 * @returns {{runs: Object<string, Object[]>, checks: string[]}}
 */
export function decodeFindings(body) {
  const runs = {};
  const raw = (body && typeof body.runs === 'object' && body.runs) || {};
  for (const [run, list] of Object.entries(raw)) {
    runs[run] = (Array.isArray(list) ? list : []).filter((f) => f && typeof f === 'object').map(decodeFinding);
  }
  const checks = Array.isArray(body && body.checks) ? body.checks.map(String) : [];
  return { runs, checks };
}

function decodeFinding(f) {
  const out = {};
  for (const [key, value] of Object.entries(f)) out[key] = TEXT_FIELDS.has(key) ? value : decodeNonFinite(value);
  out.kind = String(f.kind ?? '');
  out.severity = f.severity === 'error' ? 'error' : 'warning';
  out.tag = String(f.tag ?? '');
  out.labels = Array.isArray(f.labels) ? f.labels.map(String) : [];
  out.message = String(f.message ?? '');
  out.view = f.view && typeof f.view === 'object' ? f.view : null;
  return out;
}

/**
 * Where a click on `finding` leads: the card of `run` and the view's tag,
 * at the view's step (else the first step), or its over-time view; the
 * labels to highlight (all of a layer finding's, the first class of a
 * collapse); whether its bars read better on a log scale.
 * @param {string} run
 * @param {Object} finding decoded (decodeFindings)
 * @returns {{run: string, tag: string, overtime: boolean, step: number|undefined,
 *   labels: string[], log: boolean}}
 */
export function findingTarget(run, finding) {
  const view = finding.view || {};
  const overtime = view.view === 'overtime';
  const tag = typeof view.tag === 'string' && view.tag ? view.tag : finding.tag;
  let step;
  if (!overtime) {
    const wanted = Number(view.step ?? finding.first_step);
    step = Number.isFinite(wanted) ? wanted : undefined;
  }
  return { run, tag, overtime, step, labels: finding.labels, log: LOG_KINDS.has(finding.kind) };
}

/**
 * One finding as the strip shows it.
 * @param {string} run
 * @param {Object} finding decoded
 * @param {number} index its place in the run's sorted list (keys stay unique)
 * @returns {{key: string, kind: string, severity: string, title: string,
 *   where: string, steps: string, message: string, target: Object}}
 */
export function findingItem(run, finding, index) {
  return {
    key: `${finding.kind}\u0000${finding.tag}\u0000${index}`,
    kind: finding.kind,
    severity: finding.severity,
    title: kindTitle(finding.kind),
    where: labelList(finding.labels),
    steps: stepText(finding.first_step, finding.last_step),
    message: finding.message,
    target: findingTarget(run, finding),
  };
}

/**
 * The strip for the selected runs.
 * @param {{runs: string[], results: Map<string, {status: string,
 *   findings?: Object[], error?: string}>, checks: string[]}} input runs:
 *   the selected runs in display order; results: what each run's request
 *   gave so far ("loading" | "ready" | "error"; a run without an entry is
 *   loading); checks: the kinds the server checks
 * @returns {{status: 'none'|'loading'|'clean'|'found', worst: string,
 *   headline: string, checked: string, groups: Object[]}} worst: "error",
 *   "warning" or "" (the most severe finding shown); status: none (no run selected),
 *   clean (every run checked, nothing found: `headline` says what was
 *   checked, no groups), found (at least one finding), loading (nothing
 *   found yet, runs still being checked); a group is {run, status, items,
 *   counts, note}
 */
export function stripModel({ runs, results, checks }) {
  const checked = checkedText(checks);
  if (!runs.length) return { status: 'none', worst: '', headline: '', checked, groups: [] };
  const groups = runs.map((run) => {
    const result = results.get(run) || { status: 'loading' };
    const sorted = result.status === 'ready' ? sortFindings(result.findings) : [];
    const items = sorted.map((f, i) => findingItem(run, f, i));
    let note = '';
    if (result.status === 'loading') note = 'checking…';
    else if (result.status === 'error') note = `could not be checked: ${result.error || 'request failed'}`;
    else if (!items.length) note = 'no problems found';
    return { run, status: result.status, items, counts: countText(sorted), note };
  });
  const found = groups.filter((g) => g.items.length);
  const pending = groups.filter((g) => g.status === 'loading').length;
  const failed = groups.filter((g) => g.status === 'error').length;
  const n = runs.length;
  const what = n === 1 ? runs[0] : `${n} runs`;
  if (!found.length && !pending && !failed) {
    return {
      status: 'clean',
      worst: '',
      headline: `No problems found in ${what}${checked ? `: ${checked}` : ''}.`,
      checked,
      groups: [],
    };
  }
  if (!found.length) {
    const which = failed === n ? what : `${failed} of ${n} runs`;
    const headline = pending ? `Checking ${what} for problems…` : `Could not check ${which}.`;
    return { status: 'loading', worst: '', headline, checked, groups };
  }
  const all = found.flatMap((g) => g.items);
  const counts = countText(all.map((item) => ({ severity: item.severity })));
  const flagged = n === 1 ? runs[0] : `${found.length} of ${n} runs`;
  return {
    status: 'found',
    worst: all.some((item) => item.severity === 'error') ? 'error' : 'warning',
    headline: `${counts} in ${flagged}${pending ? ' (still checking…)' : ''}`,
    checked,
    groups,
  };
}

function joinWords(words) {
  if (words.length <= 2) return words.join(' and ');
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}
