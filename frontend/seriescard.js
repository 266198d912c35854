/**
 * An over-time card = one run + tag over every logged step (/series): a
 * layers x steps matrix for bars, a stacked area of class shares for pies.
 * No step slider: every step is in the picture. The header summarises all
 * steps (min / max / NaN count).
 *
 * DOM hooks: `.card[data-view="overtime"]`, `.series-info` (step range).
 */

import { CardBase } from './cardframe.js';
import { countNonFinite } from './charts.js';
import { el } from './dom.js';
import { fetchSeries } from './model.js';
import { formatSummary, stepSummary } from './stats.js';
import { createLayerStepsView, createStackedView } from './views/overtime.js';

const SERIES_VIEWS = { bars: createLayerStepsView, pie: createStackedView };

export class SeriesCard extends CardBase {
  constructor(run, tag, meta) {
    super({ kind: meta.kind, tag, run, view: 'overtime' }, `${run} · ${tag}`);
    this.run = run;
    this.series = null;
    this.info = el('footer', { class: 'card-footer series-info' });
    this.frame.setFooter(this.info);
  }

  /** Fetches every step (there is no step to pick) and shows them. */
  load() {
    const fetcher = (signal) => fetchSeries(this.run, this.tag, { signal });
    return this.fetchAndShow(fetcher, `${this.label} (over time)`);
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

  reload() {
    if (this.loaded) this.load();
  }

  /** Over-time cards show every step: nothing to follow. */
  followStep() {}

  exportParts() {
    return {
      ...this.viewParts(),
      title: `${this.tag} over time`,
      subtitle: `run ${this.run} · ${this.info.textContent}`,
      fileParts: [this.run, this.tag, 'over_time'],
    };
  }
}
