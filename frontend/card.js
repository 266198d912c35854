/**
 * A step card = one run + tag at one step: the card frame, the chart view
 * of its kind, the step slider, and the data life cycle (lazy first load,
 * step changes, stale-response dropping, live reloads, linked sliders).
 *
 * DOM hooks (browser tests rely on them): see cardframe.js and slider.js;
 * once loaded the card has data-step (the step drawn).
 */

import { CardBase } from './cardframe.js';
import { countNonFinite, nearestStep } from './charts.js';
import { fetchData } from './model.js';
import { formatSummary, stepSummary } from './stats.js';
import { createAttentionView } from './views/attention.js';
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
  attention: createAttentionView,
};

/**
 * A card for `run`/`tag`. Nothing is fetched until `activate()` (called
 * when the card scrolls into view).
 */
export class Card extends CardBase {
  /**
   * @param {string} run
   * @param {string} tag
   * @param {{kind: string}} meta the tag's entry from /tags
   * @param {{onPick?: function(Card, number): void}} [hooks] onPick: the
   *   user chose a step (the page moves linked sliders)
   */
  constructor(run, tag, meta, hooks = {}) {
    super({ kind: meta.kind, tag, run, view: 'steps' }, `${run} · ${tag}`, hooks);
    this.run = run;
    this.data = null;
    this.addSlider(`step of ${tag} (${run})`);
    this.tooltip = this.frame.tooltip;
    this.body = this.frame.body;
  }

  /**
   * Fetches `step` (latest when undefined) and shows it, unless the user has
   * changed step or selection since: then the response is dropped.
   * @param {number|undefined} step
   */
  load(step) {
    this.lastStep = step;
    return this.fetchAndShow((signal) => fetchData(this.run, this.tag, step, { signal }), this.label);
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
    this.frame.setStats(formatSummary(stepSummary(numbers, data.range)), `at step ${data.step}`);
    try {
      this.view.update(data);
    } catch (err) {
      // A malformed response must not break the rest of the page.
      this.frame.setState('error', `Cannot draw this step: ${err.message}`);
    }
  }

  hasData() {
    return Boolean(this.data);
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
    const step = this.data ? this.data.step : undefined;
    return {
      ...this.viewParts(),
      title: this.tag,
      subtitle: `run ${this.run}${step !== undefined ? ` · step ${step}` : ''}`
        + `${this.frame.stats.hidden ? '' : ` · ${this.frame.stats.textContent}`}`,
      fileParts: [this.run, this.tag],
      step,
    };
  }
}
