/**
 * The collapsible module groups of one kind section (grouping.js decides
 * which cards go where): a header button per group (name, number of
 * charts, expanded or not) above a card grid. The page owns the open/closed
 * state (so it survives live reloads) and creates cards only for open
 * groups; this module only keeps the DOM in step with what it is given.
 *
 * DOM hooks: `.card-group` with data-group (the group name) and data-open
 * ("true" | "false"), `.group-toggle` (aria-expanded), `.group-name`,
 * `.group-count`, `.group-grid`; `.groups-open-all` / `.groups-close-all`
 * (shown with two or more groups).
 */

import { el } from './dom.js';

let nextId = 0;

export class CardGroups {
  /**
   * @param {function(string[], boolean): void} onToggle the user opened
   *   (true) or closed (false) the named groups (one, or all of them)
   */
  constructor(onToggle) {
    this.onToggle = onToggle;
    this.names = [];
    const all = (open) => el('button', {
      type: 'button', class: `group-all groups-${open ? 'open' : 'close'}-all`, text: open ? 'Expand all' : 'Collapse all',
      onclick: () => this.onToggle(this.names, open),
    });
    this.bar = el('div', { class: 'group-bar', hidden: true }, [all(true), all(false)]);
    this.list = el('div', { class: 'group-list' });
    this.element = el('div', { class: 'card-groups' }, [this.bar, this.list]);
    this.groups = new Map(); // name -> {element, button, count, grid, open}
  }

  /**
   * Shows these groups, in this order.
   * @param {{name: string, count: number, open: boolean, nodes: HTMLElement[]}[]} entries
   *   nodes: the card elements of an open group (none for a closed one)
   */
  set(entries) {
    const wanted = new Set(entries.map((e) => e.name));
    for (const name of [...this.groups.keys()]) if (!wanted.has(name)) this.groups.delete(name);
    const elements = entries.map((entry) => {
      let group = this.groups.get(entry.name);
      if (!group) {
        group = this.make(entry.name);
        this.groups.set(entry.name, group);
      }
      group.open = entry.open;
      group.element.dataset.open = String(entry.open);
      group.button.setAttribute('aria-expanded', String(entry.open));
      group.count.textContent = `${entry.count} chart${entry.count === 1 ? '' : 's'}`;
      group.grid.hidden = !entry.open;
      replaceIfChanged(group.grid, entry.open ? entry.nodes : []);
      return group.element;
    });
    this.names = entries.map((e) => e.name);
    this.bar.hidden = entries.length < 2;
    replaceIfChanged(this.list, elements);
  }

  make(name) {
    const id = `tv-group-${nextId++}`;
    const count = el('span', { class: 'group-count' });
    const grid = el('div', { class: 'card-grid group-grid', id });
    const button = el('button', {
      type: 'button', class: 'group-toggle', 'aria-controls': id, 'aria-expanded': 'true',
      title: `Show or hide the charts of ${name}`,
    }, [el('span', { class: 'group-caret', 'aria-hidden': 'true' }), el('span', { class: 'group-name', text: name }), count]);
    const group = { name, button, count, grid, open: true };
    button.addEventListener('click', () => this.onToggle([name], !group.open));
    group.element = el('section', { class: 'card-group', dataset: { group: name, open: 'true' } }, [
      el('h3', { class: 'group-title' }, [button]),
      grid,
    ]);
    return group;
  }
}

// Re-inserting the same nodes would still cost a layout; skip it.
function replaceIfChanged(parent, nodes) {
  const current = parent.children;
  const same = current.length === nodes.length && nodes.every((n, i) => current[i] === n);
  if (!same) parent.replaceChildren(...nodes);
}
