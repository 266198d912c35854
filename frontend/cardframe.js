/**
 * The frame every card shares: header (tag, run or runs, non-finite badge,
 * min/max/NaN summary, PNG and CSV buttons), body for the view, a message
 * line with Retry, and the loading state.
 *
 * DOM hooks: `.card` with data-kind / data-tag / data-view ("steps" |
 * "overtime" | "compare") / data-state ("loading" | "ready" | "error" |
 * "empty") and data-run (one run) or data-runs (JSON list, compare cards);
 * `.card-title`, `.card-run`, `.nonfinite-badge`, `.card-stats`,
 * `.export-png`, `.export-csv`, `.card-message`, `.retry-button`.
 */

import { createTooltip, el } from './dom.js';

export class CardFrame {
  /**
   * @param {{kind: string, tag: string, view: string, run?: string,
   *   runs?: string[], runColors?: Object<string, string>,
   *   onRetry: Function, onPng: Function, onCsv: Function}} spec
   */
  constructor(spec) {
    this.badge = el('span', { class: 'nonfinite-badge', hidden: true, role: 'status' });
    this.stats = el('div', { class: 'card-stats', hidden: true });
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

  dispose() {
    this.tooltip.hide();
    this.element.remove();
  }
}
