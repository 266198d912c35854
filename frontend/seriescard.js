/**
 * An over-time card = one run + tag over every logged step (/series): a
 * layers x steps matrix for bars, a stacked area of class shares for pies.
 * No step slider: every step is in the picture. The header summarises all
 * steps (min / max / NaN count).
 *
 * DOM hooks: `.card[data-view="overtime"]`, `.series-info` (step range).
 */

import { reportError } from './banner.js';
import { CardFrame } from './cardframe.js';
import { countNonFinite } from './charts.js';
import { el } from './dom.js';
import { exportCsv, exportPng } from './export.js';
import { fetchSeries } from './model.js';
import { formatSummary, stepSummary } from './stats.js';
import { createLayerStepsView, createStackedView } from './views/overtime.js';

const SERIES_VIEWS = { bars: createLayerStepsView, pie: createStackedView };

export class SeriesCard {
  constructor(run, tag, meta) {
    this.run = run;
    this.tag = tag;
    this.kind = meta.kind;
    this.token = 0;
    this.controller = null;
    this.loaded = false;
    this.disposed = false;
    this.view = null;
    this.series = null;
    this.frame = new CardFrame({
      kind: this.kind, tag, run, view: 'overtime',
      onRetry: () => this.load(),
      onPng: () => this.exportWith(exportPng),
      onCsv: () => this.exportWith(exportCsv),
    });
    this.info = el('footer', { class: 'card-footer series-info' });
    this.frame.setFooter(this.info);
    this.element = this.frame.element;
  }

  activate() {
    if (!this.loaded && !this.disposed) {
      this.loaded = true;
      this.load();
    }
  }

  async load() {
    const token = ++this.token;
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.frame.setState('loading', this.view ? '' : 'Loading…');
    let series;
    try {
      series = await fetchSeries(this.run, this.tag, { signal: controller.signal });
    } catch (err) {
      if (token !== this.token || this.disposed) return;
      this.frame.setState('error', err.message || String(err));
      reportError(`${this.run} · ${this.tag} (over time)`, err);
      return;
    }
    if (token !== this.token || this.disposed) return;
    this.show(series);
  }

  show(series) {
    this.series = series;
    const { steps } = series;
    if (!steps.length || !series.values.some((v) => Array.isArray(v) && v.length)) {
      this.frame.body.hidden = true;
      this.frame.setStats('');
      this.info.textContent = '';
      this.frame.setState('empty', 'No data for this run yet.');
      return;
    }
    if (!this.view) this.view = SERIES_VIEWS[this.kind](this.frame.body, this.frame.tooltip);
    this.frame.body.hidden = false;
    this.frame.setState('ready', '');
    // Bars draw their first stat column; the summary is about what is drawn.
    const drawn = this.kind === 'bars'
      ? series.values.map((v) => v.map((x) => (Array.isArray(x) ? x[0] : x))) : series.values;
    this.frame.setBadge(countNonFinite(drawn));
    this.frame.setStats(`all steps: ${formatSummary(stepSummary(drawn))}`);
    this.info.textContent = steps.length > 1
      ? `${steps.length} steps, ${steps[0]} to ${steps[steps.length - 1]}` : `1 step (${steps[0]})`;
    try {
      this.view.update(series);
    } catch (err) {
      this.frame.setState('error', `Cannot draw this tag: ${err.message}`);
    }
  }

  redraw() {
    if (this.view && this.frame.state === 'ready') this.view.redraw();
  }

  reload() {
    if (this.loaded) this.load();
  }

  /** Over-time cards show every step: nothing to follow. */
  followStep() {}

  exportParts() {
    const view = this.view && this.frame.state !== 'error' ? this.view.exportParts() : { canvases: [] };
    return {
      ...view,
      title: `${this.tag} over time`,
      subtitle: `run ${this.run} · ${this.info.textContent}`,
      fileParts: [this.run, this.tag, 'over_time'],
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

  dispose() {
    this.disposed = true;
    this.token += 1;
    if (this.controller) this.controller.abort();
    this.frame.dispose();
  }
}
