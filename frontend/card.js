/**
 * One card = one run + tag: header, chart view, step slider, and the data
 * life cycle (lazy first load, step changes, stale-response dropping).
 *
 * DOM hooks (browser tests rely on them): the card has class `card` and
 * data-kind / data-run / data-tag / data-state ("loading" | "ready" |
 * "error" | "empty") and, once loaded, data-step (the step drawn); the slider has class `step-slider`, the step number
 * `step-value`, the tooltip `tooltip`.
 */

import { countNonFinite, nearestStep, stepGranularity } from './charts.js';
import { debounce, el, createTooltip } from './dom.js';
import { fetchData } from './model.js';
import { createBarsView } from './views/bars.js';
import { createHeatmapView } from './views/heatmap.js';
import { createPieView } from './views/pie.js';
import { createScatterView } from './views/scatter.js';

/** View factory per chart kind. */
export const VIEWS = {
  heatmap: createHeatmapView,
  pie: createPieView,
  bars: createBarsView,
  scatter: createScatterView,
};

// Wait this long after the slider stops before asking for a step, so that
// dragging across 100 steps does not send 100 requests.
const SLIDER_DEBOUNCE_MS = 120;

/**
 * A card for `run`/`tag`. Nothing is fetched until `activate()` (called
 * when the card scrolls into view).
 * @param {string} run
 * @param {string} tag
 * @param {{kind: string}} meta the tag's entry from /tags
 */
export class Card {
  constructor(run, tag, meta) {
    this.run = run;
    this.tag = tag;
    this.kind = meta.kind;
    this.token = 0; // bumped by every request and every selection change
    this.controller = null;
    this.loaded = false;
    this.disposed = false;
    this.steps = [];
    this.view = null;
    this.build();
  }

  build() {
    this.badge = el('span', { class: 'nonfinite-badge', hidden: true, role: 'status' });
    this.messageText = el('span', { text: 'Loading…' });
    this.retry = el('button', { type: 'button', class: 'retry-button', text: 'Retry', hidden: true });
    this.retry.addEventListener('click', () => this.load(this.lastStep));
    this.message = el('div', { class: 'card-message' }, [this.messageText, this.retry]);
    this.body = el('div', { class: 'card-body' });
    this.slider = el('input', {
      type: 'range', class: 'step-slider', min: '0', max: '0', step: '1', value: '0',
      'aria-label': `step of ${this.tag} (${this.run})`,
      disabled: true, // until the first response says which steps exist
    });
    this.stepValue = el('span', { class: 'step-value', text: '–' });
    this.stepCount = el('span', { class: 'step-count' });
    this.element = el('article', {
      class: 'card',
      dataset: { kind: this.kind, run: this.run, tag: this.tag, state: 'loading' },
    }, [
      el('header', { class: 'card-header' }, [
        el('div', { class: 'card-title', title: this.tag, text: this.tag }),
        el('div', { class: 'card-subtitle' }, [
          el('span', { class: 'card-run', title: `run: ${this.run}`, text: this.run }),
          this.badge,
        ]),
      ]),
      this.body,
      this.message,
      el('footer', { class: 'card-footer' }, [
        el('label', { class: 'step-label' }, ['step ', this.stepValue]),
        this.slider,
        this.stepCount,
      ]),
    ]);
    this.tooltip = createTooltip(this.element);
    this.requestStep = debounce((step) => this.load(step), SLIDER_DEBOUNCE_MS);
    this.slider.addEventListener('input', () => this.onSlide(Number(this.slider.value)));
    this.slider.addEventListener('change', () => this.requestStep.flush());
    this.slider.addEventListener('keydown', (e) => this.onKey(e));
  }

  /** Loads the latest step the first time the card becomes visible. */
  activate() {
    if (!this.loaded && !this.disposed) {
      this.loaded = true;
      this.load(undefined);
    }
  }

  /**
   * Fetches `step` (latest when undefined) and shows it, unless the user has
   * changed step or selection since: then the response is dropped.
   * @param {number|undefined} step
   */
  async load(step) {
    const token = ++this.token;
    this.lastStep = step;
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.setState('loading', this.view ? '' : 'Loading…');
    let data;
    try {
      data = await fetchData(this.run, this.tag, step, { signal: controller.signal });
    } catch (err) {
      if (token !== this.token || this.disposed) return;
      this.setState('error', err.message || String(err));
      return;
    }
    if (token !== this.token || this.disposed) return;
    this.show(data);
  }

  show(data) {
    this.setSteps(data.steps, data.step);
    // The step actually on screen (the slider may be ahead of it).
    this.element.dataset.step = String(data.step);
    if (data.wall_time !== undefined && Number.isFinite(data.wall_time)) {
      this.stepValue.title = `written ${new Date(data.wall_time * 1000).toLocaleString()}`;
    }
    const empty = !Array.isArray(data.values) || data.values.length === 0
      || (data.shape || []).some((d) => d === 0);
    if (empty) {
      this.body.hidden = true;
      this.setBadge(0);
      this.setState('empty', `No values at step ${data.step}.`);
      return;
    }
    if (!this.view) {
      const factory = VIEWS[this.kind];
      if (!factory) {
        this.setState('error', `Unknown chart kind "${this.kind}".`);
        return;
      }
      this.view = factory(this.body, this.tooltip);
    }
    this.body.hidden = false;
    // Show the card before drawing: canvases measure their width from layout.
    this.setState('ready', '');
    this.setBadge(countNonFinite(data.values));
    try {
      this.view.update(data);
    } catch (err) {
      // A malformed response must not break the rest of the page.
      this.setState('error', `Cannot draw this step: ${err.message}`);
    }
  }

  setBadge(n) {
    this.badge.hidden = n === 0;
    this.badge.textContent = `${n} non-finite`;
    this.badge.title = `${n} value${n === 1 ? ' is' : 's are'} NaN or ±Inf (marked in the chart)`;
  }

  setState(state, message) {
    this.element.dataset.state = state;
    this.messageText.textContent = message;
    this.message.hidden = !message;
    this.message.classList.toggle('is-error', state === 'error');
    this.retry.hidden = state !== 'error';
  }

  /** Points the slider at the logged `steps` with `current` selected. */
  setSteps(steps, current) {
    this.steps = Array.isArray(steps) && steps.length ? steps : [current];
    const s = this.steps;
    // Slider values are step numbers; the granularity makes every logged
    // step reachable and input events snap to the nearest one.
    this.slider.disabled = false;
    this.slider.min = String(s[0]);
    this.slider.max = String(s[s.length - 1]);
    this.slider.step = String(stepGranularity(s));
    this.slider.value = String(current);
    this.stepValue.textContent = String(current);
    const i = s.indexOf(current);
    this.stepCount.textContent = s.length > 1 ? `${i + 1} / ${s.length}` : '1 step';
  }

  onSlide(raw) {
    const step = nearestStep(this.steps, raw);
    if (step === undefined) return;
    this.slider.value = String(step);
    this.stepValue.textContent = String(step);
    const i = this.steps.indexOf(step);
    if (this.steps.length > 1) this.stepCount.textContent = `${i + 1} / ${this.steps.length}`;
    // Invalidate what is in flight now: it is for a step the user left.
    this.token += 1;
    this.requestStep(step);
  }

  onKey(e) {
    const back = e.key === 'ArrowLeft' || e.key === 'ArrowDown';
    const forward = e.key === 'ArrowRight' || e.key === 'ArrowUp';
    if (!back && !forward) return;
    // Native arrows move by the slider granularity, which may not be a logged
    // step: move to the previous/next logged step instead.
    e.preventDefault();
    const i = this.steps.indexOf(Number(this.slider.value));
    const j = Math.max(0, Math.min(this.steps.length - 1, i + (forward ? 1 : -1)));
    if (j !== i) this.onSlide(this.steps[j]);
  }

  /** Redraws at the current size (window resize, devicePixelRatio change). */
  redraw() {
    if (this.view && this.element.dataset.state === 'ready') this.view.redraw();
  }

  /** Reloads the step on screen (or the latest if none was loaded yet). */
  reload() {
    if (!this.loaded) return;
    const current = this.steps.length ? Number(this.slider.value) : undefined;
    this.load(current === this.steps[this.steps.length - 1] ? undefined : current);
  }

  /** Drops the card: pending responses are ignored from now on. */
  dispose() {
    this.disposed = true;
    this.token += 1;
    this.requestStep.cancel();
    if (this.controller) this.controller.abort();
    this.tooltip.hide();
    this.element.remove();
  }
}
