/**
 * A step card = one run + tag at one step: the card frame, the chart view
 * of its kind, the step slider, and the data life cycle (lazy first load,
 * step changes, stale-response dropping, live reloads, linked sliders).
 *
 * DOM hooks (browser tests rely on them): see cardframe.js and slider.js;
 * once loaded the card has data-step (the step drawn).
 */

import { countNonFinite, nearestStep } from './charts.js';
import { reportError } from './banner.js';
import { CardFrame } from './cardframe.js';
import { exportCsv, exportPng } from './export.js';
import { fetchData } from './model.js';
import { StepSlider } from './slider.js';
import { formatSummary, stepSummary } from './stats.js';
import { createBarsView } from './views/bars.js';
import { createConfusionView } from './views/confusion.js';
import { createHeatmapView } from './views/heatmap.js';
import { createPieView } from './views/pie.js';
import { createScatterView } from './views/scatter.js';

/** View factory per chart kind. */
export const VIEWS = {
  heatmap: createHeatmapView,
  pie: createPieView,
  bars: createBarsView,
  scatter: createScatterView,
  confusion: createConfusionView,
};

/**
 * A card for `run`/`tag`. Nothing is fetched until `activate()` (called
 * when the card scrolls into view).
 */
export class Card {
  /**
   * @param {string} run
   * @param {string} tag
   * @param {{kind: string}} meta the tag's entry from /tags
   * @param {{onPick?: function(Card, number): void}} [hooks] onPick: the
   *   user chose a step (the page moves linked sliders)
   */
  constructor(run, tag, meta, hooks = {}) {
    this.run = run;
    this.tag = tag;
    this.kind = meta.kind;
    this.hooks = hooks;
    this.token = 0; // bumped by every request and every selection change
    this.controller = null;
    this.loaded = false;
    this.disposed = false;
    this.pendingStep = undefined; // a linked step to go to once steps are known
    this.view = null;
    this.data = null;
    this.frame = new CardFrame({
      kind: this.kind, tag, run, view: 'steps',
      onRetry: () => this.load(this.lastStep),
      onPng: () => this.exportWith(exportPng),
      onCsv: () => this.exportWith(exportCsv),
    });
    this.slider = new StepSlider(`step of ${tag} (${run})`, {
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
    this.element = this.frame.element;
    this.tooltip = this.frame.tooltip;
    this.body = this.frame.body;
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
    this.frame.setState('loading', this.view ? '' : 'Loading…');
    let data;
    try {
      data = await fetchData(this.run, this.tag, step, { signal: controller.signal });
    } catch (err) {
      if (token !== this.token || this.disposed) return;
      this.frame.setState('error', err.message || String(err));
      reportError(`${this.run} · ${this.tag}`, err);
      return;
    }
    if (token !== this.token || this.disposed) return;
    this.show(data);
  }

  show(data) {
    this.data = data;
    this.slider.setSteps(data.steps, data.step);
    // The step actually on screen (the slider may be ahead of it).
    this.element.dataset.step = String(data.step);
    if (data.wall_time !== undefined && Number.isFinite(data.wall_time)) {
      this.slider.stepValue.title = `written ${new Date(data.wall_time * 1000).toLocaleString()}`;
    }
    if (this.pendingStep !== undefined) {
      const target = nearestStep(this.slider.steps, this.pendingStep);
      this.pendingStep = undefined;
      if (target !== undefined && target !== data.step) {
        this.slider.show(target);
        this.load(target);
        return;
      }
    }
    const empty = !Array.isArray(data.values) || data.values.length === 0
      || (data.shape || []).some((d) => d === 0);
    if (empty) {
      this.body.hidden = true;
      this.frame.setBadge(0);
      this.frame.setStats('');
      this.frame.setState('empty', `No data for this run yet (nothing at step ${data.step}).`);
      return;
    }
    if (!this.view) {
      const factory = VIEWS[this.kind];
      if (!factory) {
        this.frame.setState('error', `Unknown chart kind "${this.kind}".`);
        return;
      }
      this.view = factory(this.body, this.tooltip);
    }
    this.body.hidden = false;
    // Show the card before drawing: canvases measure their width from layout.
    this.frame.setState('ready', '');
    this.frame.setBadge(countNonFinite(data.values));
    // Scatter rows end with a class index: only x and y are values.
    const numbers = this.kind === 'scatter' ? data.values.map((r) => r.slice(0, 2)) : data.values;
    this.frame.setStats(formatSummary(stepSummary(numbers)), `at step ${data.step}`);
    try {
      this.view.update(data);
    } catch (err) {
      // A malformed response must not break the rest of the page.
      this.frame.setState('error', `Cannot draw this step: ${err.message}`);
    }
  }

  /**
   * Moves to the logged step nearest `value` (linked sliders). Before the
   * first response the steps are unknown: the step is kept for then.
   */
  followStep(value) {
    if (this.disposed) return;
    if (!this.loaded || !this.data) {
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

  /**
   * Reloads after TensorBoard reloaded: a card on the latest step follows
   * new steps, one the user moved back stays on its step.
   */
  reload() {
    if (!this.loaded) return;
    if (!this.data) {
      this.load(this.lastStep);
      return;
    }
    this.load(this.slider.atLatest() ? undefined : this.slider.value);
  }

  exportParts() {
    const view = this.view && this.frame.state !== 'error' ? this.view.exportParts() : { canvases: [] };
    const step = this.data ? this.data.step : undefined;
    return {
      ...view,
      title: this.tag,
      subtitle: `run ${this.run}${step !== undefined ? ` · step ${step}` : ''}`
        + `${this.frame.stats.hidden ? '' : ` · ${this.frame.stats.textContent}`}`,
      fileParts: [this.run, this.tag],
      step,
    };
  }

  csvSources() {
    return [{ run: this.run, tag: this.tag }];
  }

  async exportWith(fn) {
    try {
      await fn(this);
    } catch (err) {
      reportError(`export of ${this.run} · ${this.tag}`, err);
    }
  }

  /** Drops the card: pending responses are ignored from now on. */
  dispose() {
    this.disposed = true;
    this.token += 1;
    this.slider.cancel();
    if (this.controller) this.controller.abort();
    this.frame.dispose();
  }
}
