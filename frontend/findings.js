/**
 * The Findings strip at the top of the tab: per selected run, what the
 * diagnosis engine found (/findings, docs/http_api.md), errors first, each
 * naming its layers and first step; a click opens the card concerned.
 *
 * Each run is fetched on its own (`./findings?run=`) and shown as soon as
 * it arrives. A deselected run's request is aborted and its answer
 * dropped; after TensorBoard reloads, every shown run is fetched again and
 * keeps its old findings on screen until the new ones arrive.
 *
 * DOM hooks: `.findings` (data-status: none | loading | clean | found;
 * data-worst: error | warning | ""),
 * `.findings-headline`, `.findings-run` (data-run, data-status, data-found:
 * how many findings),
 * `.finding` (a button when its card can be opened; data-kind,
 * data-severity, data-run, data-tag), `.findings-more`, `.findings-checked`.
 */

import { el } from './dom.js';
import { decodeFindings, stripModel } from './findingsmodel.js';
import { fetchJson } from './model.js';

// Findings shown per run before "N more": the cards must stay on the first screen.
const VISIBLE_PER_RUN = 3;

/**
 * Fetches the findings of one run.
 * @param {string} run
 * @param {{signal?: AbortSignal}} [options]
 * @returns {Promise<{runs: Object<string, Object[]>, checks: string[]}>}
 */
export async function fetchFindings(run, options) {
  return decodeFindings(await fetchJson(`./findings?${new URLSearchParams({ run })}`, options));
}

export class FindingsStrip {
  /**
   * @param {{onOpen: function(Object, Object): void,
   *   canOpen: function(Object): boolean}} hooks onOpen(target, item): the
   *   user clicked a finding (target: findingTarget's); canOpen(target):
   *   whether the tab has a card for it (a loss scalar lives in SCALARS)
   */
  constructor({ onOpen, canOpen }) {
    this.onOpen = onOpen;
    this.canOpen = canOpen;
    this.runs = [];
    this.colors = {};
    this.checks = [];
    this.results = new Map(); // run -> {status, findings, error, generation}
    this.inflight = new Map(); // run -> {controller, generation}
    this.generation = 0; // bumped by each TensorBoard reload
    this.expanded = new Set(); // runs showing all their findings
    this.disposed = false;
    // Only the headline is live: a screen reader hears "1 error in vanishing",
    // not the whole strip again on every change.
    this.headline = el('span', { class: 'findings-headline', role: 'status' });
    this.body = el('div', { class: 'findings-runs' });
    this.checked = el('div', { class: 'findings-checked' });
    this.element = el('section', {
      class: 'findings', 'aria-label': 'findings', dataset: { status: 'none' }, hidden: true,
    }, [
      el('h2', { class: 'findings-title' }, [
        el('span', { class: 'findings-label', text: 'Findings' }),
        this.headline,
      ]),
      this.body,
      this.checked,
    ]);
  }

  /**
   * Shows the findings of `runs` (the selection, in display order),
   * fetching those not fetched since the last reload.
   * @param {string[]} runs
   * @param {Object<string, string>} colors CSS colour per run
   */
  setRuns(runs, colors) {
    if (this.disposed) return;
    // The page calls this on every filter or view change: the same runs and
    // nothing new to fetch leave the strip as it is.
    const palette = colors || this.colors;
    let changed = runs.length !== this.runs.length || runs.some((r, i) => r !== this.runs[i])
      || palette !== this.colors;
    this.runs = [...runs];
    this.colors = palette;
    const wanted = new Set(runs);
    for (const [run, flight] of this.inflight) {
      if (!wanted.has(run)) {
        flight.controller.abort();
        this.inflight.delete(run);
      }
    }
    for (const run of [...this.results.keys()]) if (!wanted.has(run)) this.results.delete(run);
    for (const run of runs) {
      const result = this.results.get(run);
      const flight = this.inflight.get(run);
      const fresh = (result && result.generation === this.generation)
        || (flight && flight.generation === this.generation);
      if (!fresh) {
        this.fetchRun(run);
        changed = true;
      }
    }
    if (changed) this.render();
  }

  /** TensorBoard reloaded: the next setRuns fetches every run again. */
  refresh() {
    this.generation += 1;
  }

  async fetchRun(run) {
    const previous = this.inflight.get(run);
    if (previous) previous.controller.abort();
    const flight = { controller: new AbortController(), generation: this.generation };
    this.inflight.set(run, flight);
    let outcome;
    try {
      const body = await fetchFindings(run, { signal: flight.controller.signal });
      outcome = {
        status: 'ready', findings: body.runs[run] || [], checks: body.checks, generation: flight.generation,
      };
    } catch (err) {
      outcome = {
        status: 'error',
        error: (err && err.message) || String(err),
        generation: flight.generation,
        aborted: Boolean(err && err.name === 'AbortError'),
      };
    }
    // Dropped: the run was deselected, or a newer request replaced this one.
    if (this.disposed || this.inflight.get(run) !== flight || outcome.aborted) return;
    this.inflight.delete(run);
    if (outcome.checks && outcome.checks.length) this.checks = outcome.checks;
    this.results.set(run, outcome);
    this.render();
  }

  render() {
    // A rebuild must not throw a keyboard user out of the strip.
    const { activeElement } = document;
    const active = this.element.contains(activeElement) ? activeElement.dataset.focusKey : null;
    const model = stripModel({ runs: this.runs, results: this.results, checks: this.checks });
    this.element.hidden = model.status === 'none';
    this.element.dataset.status = model.status;
    this.element.dataset.worst = model.worst;
    this.headline.textContent = model.headline;
    this.body.replaceChildren(...model.groups.map((group) => this.renderGroup(group)));
    // A clean strip's headline already says what was checked.
    const checked = model.status === 'clean' ? '' : model.checked;
    this.checked.textContent = checked ? `${checked[0].toUpperCase()}${checked.slice(1)}.` : '';
    this.checked.hidden = !this.checked.textContent;
    if (active) {
      const nodes = [...this.element.querySelectorAll('[data-focus-key]')];
      const again = nodes.find((n) => n.dataset.focusKey === active);
      if (again) again.focus();
    }
  }

  renderGroup(group) {
    const { run } = group;
    // Older findings stay on screen while a reload fetches new ones.
    const busy = this.inflight.has(run) && group.status !== 'loading';
    const head = el('div', { class: 'findings-run-head' }, [
      el('span', {
        class: 'swatch swatch-round run-swatch', style: { background: this.colors[run] || '#9e9e9e' },
      }),
      el('span', { class: 'findings-run-name', title: `run: ${run}`, text: run }),
      el('span', { class: 'findings-run-note', text: group.note || group.counts }),
    ]);
    const node = el('div', {
      class: 'findings-run',
      dataset: { run, status: group.status, found: String(group.items.length) },
      'aria-busy': busy ? 'true' : null,
    }, [head]);
    if (!group.items.length) return node;
    const all = this.expanded.has(run);
    const shown = all ? group.items : group.items.slice(0, VISIBLE_PER_RUN);
    const list = el('ul', { class: 'findings-list' }, shown.map((item) => el('li', {}, [this.renderItem(item)])));
    node.append(list);
    const hidden = group.items.length - shown.length;
    if (hidden > 0 || (all && group.items.length > VISIBLE_PER_RUN)) {
      const more = el('button', {
        type: 'button',
        class: 'findings-more',
        text: hidden > 0 ? `${hidden} more finding${hidden === 1 ? '' : 's'}` : 'fewer',
        'aria-expanded': String(all),
        dataset: { focusKey: `more\u0000${run}` },
      });
      more.addEventListener('click', () => {
        if (all) this.expanded.delete(run);
        else this.expanded.add(run);
        this.render();
      });
      node.append(more);
    }
    return node;
  }

  renderItem(item) {
    const { target } = item;
    const openable = this.canOpen(target);
    // The step range never breaks: "from step 0 to" / "675" would hide it.
    const steps = item.steps ? el('span', { class: 'finding-steps', text: item.steps }) : null;
    const parts = [
      el('span', { class: 'finding-severity', text: item.severity }),
      el('span', { class: 'finding-title', text: item.title }),
      el('span', { class: 'finding-where' }, [item.where, item.where && steps ? ' · ' : null, steps]),
      el('span', { class: 'finding-open', text: openable ? `${target.tag} ›` : `${target.tag} (SCALARS tab)` }),
      el('span', { class: 'finding-message', text: item.message }),
    ];
    const dataset = {
      kind: item.kind,
      severity: item.severity,
      run: target.run,
      tag: target.tag,
      focusKey: `${target.run}\u0000${item.key}`,
    };
    if (!openable) {
      return el('div', {
        class: 'finding', dataset, title: `${target.tag} is not a chart of this tab (see the SCALARS tab)`,
      }, parts);
    }
    let at = '';
    if (target.overtime) at = ' over time';
    else if (target.step !== undefined) at = ` at step ${target.step}`;
    const button = el('button', {
      type: 'button',
      class: 'finding',
      dataset,
      title: `open ${target.tag} (${target.run})${at}`,
    }, parts);
    button.addEventListener('click', () => this.onOpen(target, item));
    return button;
  }

  /** Stops: requests in flight are aborted, their answers dropped. */
  dispose() {
    this.disposed = true;
    this.inflight.forEach((flight) => flight.controller.abort());
    this.inflight.clear();
  }
}
