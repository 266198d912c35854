/**
 * The compare bar, shown in the compare view: which two runs the heatmap
 * difference panels subtract (A − B).
 *
 * DOM hooks: `.compare-bar`, `.diff-a`, `.diff-b`.
 */

import { el } from './dom.js';

export class CompareBar {
  /** @param {function(string[]): void} onChange receives [runA, runB] */
  constructor(onChange) {
    this.a = el('select', { class: 'diff-a', 'aria-label': 'difference: run A' });
    this.b = el('select', { class: 'diff-b', 'aria-label': 'difference: run B' });
    for (const select of [this.a, this.b]) {
      select.addEventListener('change', () => onChange([this.a.value, this.b.value]));
    }
    this.element = el('div', { class: 'compare-bar', hidden: true }, [
      el('span', { class: 'compare-hint', text: 'Comparing the selected runs. Heatmap difference:' }),
      el('label', { class: 'toggle' }, ['A ', this.a]),
      el('span', { text: '−' }),
      el('label', { class: 'toggle' }, ['B ', this.b]),
    ]);
  }

  /**
   * @param {string[]} runs the selected runs, in display order
   * @param {string[]|null} pair the pair in use
   */
  set(runs, pair) {
    const [a, b] = pair || [];
    for (const [select, value] of [[this.a, a], [this.b, b]]) {
      select.replaceChildren(...runs.map((run) => el('option', { value: run, text: run })));
      if (value !== undefined) select.value = value;
      select.disabled = runs.length < 2;
    }
  }

  show(visible) {
    this.element.hidden = !visible;
  }
}
