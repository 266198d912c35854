/**
 * A compare card = one tag across several runs at one step: grouped bars,
 * pies side by side, or heatmaps side by side on one colour scale with a
 * difference panel (views/compare.js). One slider over the union of the
 * runs' steps; each run shows its own logged step nearest to it.
 *
 * DOM hooks: `.card[data-view="compare"]` with data-runs (JSON list) and
 * data-step (the slider's step once loaded).
 */

import { reportError } from './banner.js';
import { CardBase } from './cardframe.js';
import { countNonFinite, nearestStep } from './charts.js';
import { fetchData } from './model.js';
import { alignSteps, unionSteps } from './series.js';
import { formatSummary, stepSummary } from './stats.js';
import { COMPARE_VIEWS } from './views/compare.js';

export class CompareCard extends CardBase {
  /**
   * @param {{kind: string, tag: string, runs: string[]}} spec from plan.js
   * @param {{runColors: Object<string, string>, diff: function(): (string[]|null),
   *   onPick?: function(CompareCard, number): void}} hooks
   */
  constructor(spec, hooks) {
    super({
      kind: spec.kind, tag: spec.tag, runs: spec.runs, runColors: hooks.runColors, view: 'compare',
    }, spec.tag, hooks);
    this.runs = spec.runs;
    this.absent = spec.absent || [];
    this.stepsByRun = {};
    this.datasets = null;
    this.addSlider(`step of ${this.tag} (${this.runs.join(', ')})`);
    this.element.classList.add('is-wide');
  }

  /** A linked step that came before the card was visible: load it aligned. */
  firstStep() {
    const step = this.pendingStep;
    this.pendingStep = undefined;
    return step;
  }

  /**
   * Loads every run at its step nearest `value` (each run's latest when
   * undefined or before its steps are known).
   */
  async load(value) {
    this.lastStep = value;
    const { token, signals } = this.begin(this.runs.length);
    const steps = value === undefined ? {} : alignSteps(this.stepsByRun, value);
    // A linked step that arrived before this card knew its runs' steps:
    // load the latest first, then once more at the aligned steps.
    const unknown = value !== undefined && this.runs.some((run) => !this.stepsByRun[run]);
    const results = await Promise.allSettled(this.runs.map((run, i) => fetchData(
      run, this.tag, steps[run], { signal: signals[i] },
    )));
    if (this.isStale(token)) return;
    const failures = [];
    const datasets = results.map((r, i) => {
      const run = this.runs[i];
      if (r.status === 'rejected') {
        failures.push(`${run}: ${r.reason.message || r.reason}`);
        reportError(`${run} · ${this.tag}`, r.reason);
        return { run, color: this.hooks.runColors[run], step: undefined, data: null };
      }
      this.stepsByRun[run] = r.value.steps.length ? r.value.steps : [r.value.step];
      return { run, color: this.hooks.runColors[run], step: r.value.step, data: r.value };
    });
    if (failures.length === this.runs.length) {
      this.frame.setState('error', failures.join('\n'));
      return;
    }
    // Selected runs that never logged this tag: an empty panel each, in
    // run order, so the gap is visible.
    for (const run of this.absent) datasets.push({ run, color: this.hooks.runColors[run], step: undefined, data: null });
    const order = this.hooks.runOrder || ((a, b) => (a < b ? -1 : 1));
    datasets.sort((x, y) => order(x.run, y.run));
    this.show(datasets, value, failures);
    if (unknown) this.load(value);
  }

  show(datasets, value, failures = []) {
    this.datasets = datasets;
    const all = unionSteps(Object.values(this.stepsByRun));
    const shown = datasets.filter((d) => d.data).map((d) => d.step);
    const current = value === undefined ? Math.max(...shown) : nearestStep(all, value);
    this.slider.setSteps(all, current);
    this.element.dataset.step = String(current);
    const differ = datasets.some((d) => d.data && d.step !== current);
    this.slider.setNote(differ
      ? `shown: ${datasets.map((d) => `${d.run} ${d.data ? `step ${d.step}` : '–'}`).join(' · ')}` : '');
    if (!this.view) this.view = COMPARE_VIEWS[this.kind](this.frame.body, this.frame.tooltip);
    this.frame.body.hidden = false;
    this.frame.setState('ready', failures.join('\n'));
    const withData = datasets.filter((d) => d.data);
    this.frame.setBadge(withData.reduce((n, d) => n + countNonFinite(d.data.values), 0));
    this.frame.setStats(withData.map((d) => `${d.run}: ${formatSummary(stepSummary(d.data.values, d.data.range))}`).join('\n'));
    try {
      this.view.update(datasets, { diff: this.hooks.diff() });
    } catch (err) {
      this.frame.setState('error', `Cannot draw this step: ${err.message}`);
    }
  }

  /** The compare pair changed: redraw with the data on screen. */
  refreshDiff() {
    if (this.datasets && this.view && this.frame.state === 'ready') {
      this.view.update(this.datasets, { diff: this.hooks.diff() });
    }
  }

  hasData() {
    return Boolean(this.datasets);
  }

  reload() {
    if (!this.loaded) return;
    this.load(this.datasets && !this.slider.atLatest() ? this.slider.value : undefined);
  }

  exportParts() {
    const step = this.datasets ? this.slider.value : undefined;
    return {
      ...this.viewParts(),
      title: this.tag,
      subtitle: `runs ${this.runs.join(', ')}${step !== undefined ? ` · step ${step}` : ''}`,
      fileParts: [this.tag, 'compare', ...this.runs],
      step,
    };
  }
}
