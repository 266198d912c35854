/**
 * The run selector in the sidebar: "All runs" plus one checkbox per run,
 * each with the run's colour (the colour compare views draw it in) and its
 * tag count.
 *
 * DOM hooks: `.select-all-runs`, `.run-toggle` (data-run), `.run-name`.
 */

import { el } from './dom.js';

export class RunList {
  /**
   * @param {function(Set<string>): void} onChange the user changed the
   *   selection; receives the new set
   */
  constructor(onChange) {
    this.onChange = onChange;
    this.runs = [];
    this.selected = new Set();
    this.selectAll = el('input', { type: 'checkbox', class: 'select-all-runs', 'aria-label': 'select all runs' });
    this.selectAll.addEventListener('change', () => {
      this.emit(this.selectAll.checked ? new Set(this.runs) : new Set());
    });
    this.list = el('ul', { class: 'run-list' });
    this.element = el('aside', { class: 'sidebar', 'aria-label': 'runs' }, [
      el('h2', { class: 'sidebar-title', text: 'Runs' }),
      el('label', { class: 'run-item select-all' }, [this.selectAll, el('span', { text: 'All runs' })]),
      this.list,
    ]);
  }

  /**
   * Rebuilds the list.
   * @param {string[]} runs in display order
   * @param {Object<string, number>} counts tags per run
   * @param {Object<string, string>} colors CSS colour per run
   * @param {Set<string>} selected
   */
  set(runs, counts, colors, selected) {
    this.runs = runs;
    this.list.replaceChildren(...runs.map((run) => {
      const box = el('input', { type: 'checkbox', class: 'run-toggle', value: run, dataset: { run } });
      box.addEventListener('change', () => {
        const next = new Set(this.selected);
        if (box.checked) next.add(run);
        else next.delete(run);
        this.emit(next);
      });
      return el('li', {}, [
        el('label', { class: 'run-item', title: run }, [
          box,
          el('span', { class: 'swatch swatch-round run-swatch', style: { background: colors[run] } }),
          el('span', { class: 'run-name', text: run }),
          el('span', { class: 'run-count', text: String(counts[run] ?? 0) }),
        ]),
      ]);
    }));
    this.sync(selected);
  }

  /** Shows `selected` in the checkboxes. */
  sync(selected) {
    this.selected = selected;
    for (const box of this.list.querySelectorAll('input.run-toggle')) box.checked = selected.has(box.value);
    const n = this.runs.filter((r) => selected.has(r)).length;
    this.selectAll.checked = this.runs.length > 0 && n === this.runs.length;
    this.selectAll.indeterminate = n > 0 && n < this.runs.length;
  }

  emit(next) {
    this.sync(next);
    this.onChange(next);
  }
}
