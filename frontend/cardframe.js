/**
 * What every card shares: the frame (header with tag, run or runs,
 * non-finite badge, min/max/NaN summary, PNG and CSV buttons; body for the
 * view; a message line with Retry; the loading state) and CardBase, the
 * life cycle around it (lazy first load, stale responses dropped, the step
 * slider and linked steps, exports, disposal).
 *
 * DOM hooks: `.card` with data-kind / data-tag / data-view ("steps" |
 * "overtime" | "compare") / data-state ("loading" | "ready" | "error" |
 * "empty") and data-run (one run) or data-runs (JSON list, compare cards);
 * `.card-title`, `.card-run`, `.nonfinite-badge`, `.card-stats`,
 * `.export-png`, `.export-csv`, `.card-message`, `.retry-button`,
 * `.sample-note` (TensorBoard sampled the steps), `.card-focus` (the
 * finding that opened the card; the card then has class `is-focused` and
 * data-highlight, a JSON list of the labels outlined in its chart).
 */

import { reportError } from './banner.js';
import { createTooltip, el } from './dom.js';
import { exportCsv, exportPng } from './export.js';
import { samplingNote } from './sampling.js';
import { StepSlider } from './slider.js';

export class CardFrame {
  /**
   * @param {{kind: string, tag: string, view: string, run?: string,
   *   runs?: string[], runColors?: Object<string, string>,
   *   onRetry: Function, onPng: Function, onCsv: Function}} spec
   */
  constructor(spec) {
    this.badge = el('span', { class: 'nonfinite-badge', hidden: true, role: 'status' });
    this.stats = el('div', { class: 'card-stats', hidden: true });
    this.sampleNote = el('div', { class: 'sample-note', hidden: true });
    this.focusText = el('span', { class: 'card-focus-text' });
    const clearFocus = el('button', {
      type: 'button', class: 'card-focus-clear', text: '×', title: 'Clear the highlight', 'aria-label': 'clear the highlight',
    });
    clearFocus.addEventListener('click', () => spec.onClearFocus());
    this.focusNote = el('div', { class: 'card-focus', hidden: true }, [this.focusText, clearFocus]);
    this.messageText = el('span', { text: 'Loading…' });
    this.retry = el('button', { type: 'button', class: 'retry-button', text: 'Retry', hidden: true });
    this.retry.addEventListener('click', () => spec.onRetry());
    this.message = el('div', { class: 'card-message' }, [this.messageText, this.retry]);
    this.body = el('div', { class: 'card-body' });
    const who = spec.runs ? `${spec.runs.length} runs` : spec.run;
    const png = el('button', {
      type: 'button', class: 'card-action export-png', text: 'PNG',
      title: 'Download this view as a PNG image', 'aria-label': `download ${spec.tag} (${who}) as PNG`,
    });
    const csv = el('button', {
      type: 'button', class: 'card-action export-csv', text: 'CSV',
      title: 'Download the data of every step as CSV', 'aria-label': `download ${spec.tag} (${who}) data as CSV`,
    });
    png.addEventListener('click', () => spec.onPng());
    csv.addEventListener('click', () => spec.onCsv());
    this.exportButtons = [png, csv];
    const runLine = spec.runs
      ? el('span', { class: 'card-runs' }, spec.runs.map((run) => el('span', {
        class: 'card-run run-chip', title: `run: ${run}`,
      }, [
        el('span', { class: 'swatch swatch-round', style: { background: spec.runColors[run] } }),
        run,
      ])))
      : el('span', { class: 'card-run', title: `run: ${spec.run}`, text: spec.run });
    const dataset = { kind: spec.kind, tag: spec.tag, view: spec.view, state: 'loading' };
    if (spec.runs) dataset.runs = JSON.stringify(spec.runs);
    else dataset.run = spec.run;
    this.element = el('article', { class: 'card', dataset }, [
      el('header', { class: 'card-header' }, [
        el('div', { class: 'card-title-row' }, [
          el('div', { class: 'card-title', title: spec.tag, text: spec.tag }),
          el('div', { class: 'card-actions' }, [png, csv]),
        ]),
        el('div', { class: 'card-subtitle' }, [runLine, this.badge]),
        this.stats,
        this.sampleNote,
        this.focusNote,
      ]),
      this.body,
      this.message,
    ]);
    this.tooltip = createTooltip(this.element);
  }

  /** Appends the footer (the step slider) below the message line. */
  setFooter(node) {
    this.element.append(node);
  }

  setState(state, message) {
    this.element.dataset.state = state;
    this.messageText.textContent = message;
    this.message.hidden = !message;
    this.message.classList.toggle('is-error', state === 'error');
    this.retry.hidden = state !== 'error';
  }

  get state() {
    return this.element.dataset.state;
  }

  setBadge(n) {
    this.badge.hidden = n === 0;
    this.badge.textContent = `${n} non-finite`;
    this.badge.title = `${n} value${n === 1 ? ' is' : 's are'} NaN or ±Inf (marked in red in the chart)`;
  }

  /** The min/max/NaN line (empty text hides it). */
  setStats(text, title) {
    this.stats.textContent = text || '';
    this.stats.title = title || '';
    this.stats.hidden = !text;
  }

  /** The sampling note ("" hides it). */
  setSampling(text) {
    this.sampleNote.textContent = text || '';
    this.sampleNote.hidden = !text;
  }

  /** Marks the card as opened by a finding (`text`: its message) or unmarks it. */
  setFocus(on, text) {
    this.focusText.textContent = on ? text || 'Opened from the findings.' : '';
    this.focusNote.hidden = !on;
    this.element.classList.toggle('is-focused', on);
  }

  dispose() {
    this.tooltip.hide();
    this.element.remove();
  }
}

/**
 * The life cycle a card has whatever it shows. A subclass sets `run` (or
 * `runs`), implements `load(step)`, `show(response)`, `reload()`,
 * `exportParts()` and, with a step slider, `hasData()`; `view` is its chart
 * view once created.
 *
 * Every request, step move and disposal bumps `token`: a response whose
 * token is no longer current is dropped (the user has moved on).
 */
export class CardBase {
  /**
   * @param {Object} frameSpec CardFrame's spec without the callbacks
   * @param {string} label names the card in error reports ("run · tag")
   * @param {{onPick?: function(CardBase, number): void}} [hooks] onPick:
   *   the user chose a step (the page moves linked sliders)
   */
  constructor(frameSpec, label, hooks = {}) {
    this.kind = frameSpec.kind;
    this.tag = frameSpec.tag;
    this.label = label;
    this.hooks = hooks;
    this.token = 0;
    this.controllers = []; // one per request in flight
    this.loaded = false;
    this.disposed = false;
    this.pendingStep = undefined; // a linked step to go to once steps are known
    this.lastStep = undefined; // what the last load asked for (Retry asks again)
    this.focusSpec = null; // {labels, log, applied} of the finding that opened the card
    this.view = null;
    this.slider = null;
    this.frame = new CardFrame({
      ...frameSpec,
      onRetry: () => this.load(this.lastStep),
      onPng: () => this.exportWith(exportPng),
      onCsv: () => this.exportWith(exportCsv),
      onClearFocus: () => this.unfocus(),
    });
    this.element = this.frame.element;
  }

  /**
   * Adds a step slider as the footer: a pick loads its step and tells the
   * page (linked sliders).
   */
  addSlider(ariaLabel) {
    this.slider = new StepSlider(ariaLabel, {
      // Invalidate what is in flight now: it is for a step the user left.
      onMove: () => {
        this.token += 1;
      },
      onPick: (step) => {
        this.load(step);
        if (this.hooks.onPick) this.hooks.onPick(this, step);
      },
    });
    this.frame.setFooter(this.slider.element);
  }

  /** Loads the first time the card becomes visible. */
  activate() {
    if (!this.loaded && !this.disposed) {
      this.loaded = true;
      this.load(this.firstStep());
    }
  }

  /** The step of the first load: undefined, the latest. */
  firstStep() {
    return undefined;
  }

  /**
   * Starts a request: a new token, what is in flight aborted, the loading
   * state shown.
   * @param {number} count fetches in this request (one abort signal each)
   * @returns {{token: number, signals: AbortSignal[]}}
   */
  begin(count) {
    const token = ++this.token;
    this.controllers.forEach((c) => c.abort());
    this.controllers = Array.from({ length: count }, () => new AbortController());
    this.frame.setState('loading', this.view ? '' : 'Loading…');
    return { token, signals: this.controllers.map((c) => c.signal) };
  }

  /** Whether a response to the request of `token` is to be dropped. */
  isStale(token) {
    return token !== this.token || this.disposed;
  }

  /**
   * One fetch, shown unless it is stale; a failure is the card's error
   * state and is reported under `label`.
   * @param {function(AbortSignal): Promise<Object>} fetcher
   * @param {string} label
   */
  async fetchAndShow(fetcher, label) {
    const { token, signals } = this.begin(1);
    let response;
    try {
      response = await fetcher(signals[0]);
    } catch (err) {
      if (this.isStale(token)) return;
      this.frame.setState('error', err.message || String(err));
      reportError(label, err);
      return;
    }
    if (this.isStale(token)) return;
    this.show(response);
    this.frame.setSampling(samplingNote(response));
    this.applyFocus();
  }

  /**
   * Opens the card on a finding (a click in the Findings strip): shows
   * `step` (the logged step nearest it; cards without a slider show every
   * step) and outlines `labels` in the chart, `log` switching bars to the
   * log scale; `note` (the finding's message) stays on the card until the
   * user clears it or another finding is opened.
   * @param {{step?: number, labels?: string[], log?: boolean, note?: string}} focus
   */
  focus({ step, labels = [], log = false, note = '' }) {
    if (this.disposed) return;
    this.focusSpec = { labels, log, applied: false };
    this.frame.setFocus(true, note);
    this.applyFocus();
    if (!this.slider || step === undefined) {
      this.activate();
      return;
    }
    const snapped = this.hasData() ? this.slider.show(step) : undefined;
    const target = snapped ?? step;
    const shown = this.frame.state === 'ready' ? Number(this.element.dataset.step) : NaN;
    if (this.loaded && target === shown) return;
    this.loaded = true;
    this.slider.cancel();
    this.load(target);
  }

  /** Clears what focus() marked. */
  unfocus() {
    this.focusSpec = null;
    this.frame.setFocus(false, '');
    delete this.element.dataset.highlight;
    if (this.view && typeof this.view.focus === 'function') this.view.focus({ labels: [] });
  }

  // Once the view has drawn data: its focus stays across steps, so it is
  // applied once (a user who then leaves the log scale stays off it).
  applyFocus() {
    const spec = this.focusSpec;
    if (!spec || spec.applied || !this.view || this.frame.state !== 'ready') return;
    spec.applied = true;
    const shown = typeof this.view.focus === 'function' ? this.view.focus({ labels: spec.labels, log: spec.log }) : [];
    this.element.dataset.highlight = JSON.stringify(shown);
  }

  /**
   * Moves to the logged step nearest `value` (linked sliders). Before the
   * first response the steps are unknown: the step is kept for then.
   */
  followStep(value) {
    if (this.disposed) return;
    if (!this.loaded || !this.hasData()) {
      this.pendingStep = value;
      return;
    }
    const target = this.slider.show(value);
    if (target === undefined || target === Number(this.element.dataset.step)) return;
    this.slider.cancel();
    this.load(target);
  }

  /** Redraws at the current size (window resize, devicePixelRatio change). */
  redraw() {
    if (this.view && this.frame.state === 'ready') this.view.redraw();
  }

  /** The view's part of exportParts() (nothing drawn in the error state). */
  viewParts() {
    return this.view && this.frame.state !== 'error' ? this.view.exportParts() : { canvases: [] };
  }

  csvSources() {
    return (this.runs || [this.run]).map((run) => ({ run, tag: this.tag }));
  }

  async exportWith(fn) {
    try {
      await fn(this);
    } catch (err) {
      reportError(`export of ${this.label}`, err);
    }
  }

  /** Drops the card: pending responses are ignored from now on. */
  dispose() {
    this.disposed = true;
    this.token += 1;
    if (this.slider) this.slider.cancel();
    this.controllers.forEach((c) => c.abort());
    this.frame.dispose();
  }
}
