/**
 * Entry point of the "Model Insight" tab. TensorBoard loads this module in a
 * same-origin iframe whose base URL is /data/plugin/torch_visualization/ and
 * calls `render()`.
 *
 * The page: a run selector (one checkbox per run, class `run-toggle`, plus
 * select-all), a tag regex filter (class `tag-filter`), and one card per
 * run+tag grouped in sections by chart kind. Cards fetch their data only
 * when scrolled into view, so 100+ cards stay cheap.
 */

import { Card } from './card.js';
import { debounce, el } from './dom.js';
import { fetchTags } from './model.js';

/** Section order and titles, by chart kind. */
const SECTIONS = [
  ['heatmap', 'Heatmaps'],
  ['pie', 'Pies'],
  ['bars', 'Bars'],
  ['scatter', 'Scatter'],
];

/**
 * Builds the tab into document.body. Safe to call again (it starts over).
 * @returns {Promise<void>} resolves once the run/tag listing is shown
 */
export async function render() {
  if (render.page) render.page.destroy();
  // Canvases size themselves from CSS widths: style first, then draw.
  await ensureStylesheet();
  const page = new Page(document.body);
  render.page = page;
  await page.reload();
}

/** Page state and the parts of the DOM that depend on it. */
class Page {
  constructor(root) {
    this.root = root;
    this.runs = {}; // run -> tag -> metadata, as /tags returns it
    this.selected = new Set();
    this.known = new Set(); // runs seen before: new runs start selected
    this.filter = null; // RegExp, null = everything
    this.cards = new Map(); // key(run, tag) -> Card
    this.observer = new IntersectionObserver((entries) => this.onVisible(entries), {
      rootMargin: '300px 0px',
    });
    this.onResize = debounce(() => this.cards.forEach((c) => c.redraw()), 100);
    window.addEventListener('resize', this.onResize);
    this.build();
  }

  build() {
    document.documentElement.lang = document.documentElement.lang || 'en';
    this.selectAll = el('input', { type: 'checkbox', class: 'select-all-runs', 'aria-label': 'select all runs' });
    this.selectAll.addEventListener('change', () => {
      this.selected = this.selectAll.checked ? new Set(Object.keys(this.runs)) : new Set();
      this.syncRunToggles();
      this.update();
    });
    this.runList = el('ul', { class: 'run-list' });
    this.filterInput = el('input', {
      type: 'search',
      class: 'tag-filter',
      placeholder: 'Filter tags (regular expression)',
      'aria-label': 'filter tags by regular expression',
      spellcheck: 'false',
      autocomplete: 'off',
    });
    this.filterError = el('div', { class: 'filter-error', role: 'alert', hidden: true });
    const applyFilter = debounce(() => this.setFilter(this.filterInput.value), 150);
    this.filterInput.addEventListener('input', applyFilter);
    this.filterInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') applyFilter.flush();
    });
    this.summary = el('span', { class: 'summary', role: 'status' });
    this.reloadButton = el('button', { type: 'button', class: 'reload-button', text: 'Reload' });
    this.reloadButton.addEventListener('click', () => this.reload());
    this.notice = el('div', { class: 'page-notice', role: 'status' });
    this.sections = new Map();
    const sectionNodes = SECTIONS.map(([kind, title]) => {
      const count = el('span', { class: 'section-count' });
      const grid = el('div', { class: 'card-grid' });
      const node = el('section', { class: 'kind-section', dataset: { kind }, hidden: true }, [
        el('h2', { class: 'section-title' }, [title, count]),
        grid,
      ]);
      this.sections.set(kind, { node, grid, count });
      return node;
    });
    this.app = el('div', { class: 'tv-app' }, [
      el('aside', { class: 'sidebar', 'aria-label': 'runs' }, [
        el('h2', { class: 'sidebar-title', text: 'Runs' }),
        el('label', { class: 'run-item select-all' }, [this.selectAll, el('span', { text: 'All runs' })]),
        this.runList,
      ]),
      el('main', { class: 'content' }, [
        el('div', { class: 'toolbar' }, [
          el('div', { class: 'filter-box' }, [this.filterInput, this.filterError]),
          this.summary,
          this.reloadButton,
        ]),
        this.notice,
        ...sectionNodes,
      ]),
    ]);
    this.root.replaceChildren(this.app);
  }

  /** Fetches the run/tag listing and rebuilds the cards that changed. */
  async reload() {
    this.setNotice('Loading runs and tags…');
    this.reloadButton.disabled = true;
    const token = (this.listingToken = (this.listingToken || 0) + 1);
    try {
      const { runs } = await fetchTags();
      if (token !== this.listingToken) return;
      this.runs = runs;
      for (const run of Object.keys(runs)) {
        if (!this.known.has(run)) this.selected.add(run);
        this.known.add(run);
      }
      for (const run of [...this.selected]) if (!(run in runs)) this.selected.delete(run);
      this.buildRunList();
      this.update();
      // Cards still on screen refresh too (new steps may have been logged).
      this.cards.forEach((card) => {
        const meta = runs[card.run] && runs[card.run][card.tag];
        if (meta && meta.kind === card.kind) card.reload();
      });
    } catch (err) {
      if (token !== this.listingToken) return;
      this.setNotice(`Could not load the tag listing: ${err.message}`, true);
    } finally {
      if (token === this.listingToken) this.reloadButton.disabled = false;
    }
  }

  buildRunList() {
    const runs = Object.keys(this.runs).sort(naturalCompare);
    this.runList.replaceChildren(...runs.map((run) => {
      const box = el('input', {
        type: 'checkbox', class: 'run-toggle', value: run, dataset: { run },
      });
      box.checked = this.selected.has(run);
      box.addEventListener('change', () => {
        if (box.checked) this.selected.add(run);
        else this.selected.delete(run);
        this.syncRunToggles();
        this.update();
      });
      const n = Object.keys(this.runs[run]).length;
      return el('li', {}, [
        el('label', { class: 'run-item', title: run }, [
          box,
          el('span', { class: 'run-name', text: run }),
          el('span', { class: 'run-count', text: String(n) }),
        ]),
      ]);
    }));
    this.syncRunToggles();
  }

  syncRunToggles() {
    for (const box of this.runList.querySelectorAll('input.run-toggle')) {
      box.checked = this.selected.has(box.value);
    }
    const total = Object.keys(this.runs).length;
    const n = [...this.selected].filter((r) => r in this.runs).length;
    this.selectAll.checked = total > 0 && n === total;
    this.selectAll.indeterminate = n > 0 && n < total;
  }

  /** Applies a filter text; an invalid regex keeps the last valid filter. */
  setFilter(text) {
    if (!text) {
      this.filter = null;
      this.showFilterError('');
    } else {
      try {
        this.filter = new RegExp(text, 'i');
        this.showFilterError('');
      } catch (err) {
        // The engine's message already names the pattern and the problem.
        this.showFilterError(err.message);
        return;
      }
    }
    this.update();
  }

  showFilterError(message) {
    this.filterError.textContent = message;
    this.filterError.hidden = !message;
    this.filterInput.classList.toggle('is-invalid', Boolean(message));
    this.filterInput.setAttribute('aria-invalid', message ? 'true' : 'false');
  }

  /** Makes the cards match selection + filter, keeping cards that stay. */
  update() {
    const wanted = new Map(); // kind -> [[key, run, tag, meta]]
    let total = 0;
    let tagsSeen = 0;
    for (const run of Object.keys(this.runs)) {
      for (const [tag, meta] of Object.entries(this.runs[run])) {
        tagsSeen += 1;
        if (!this.selected.has(run)) continue;
        if (this.filter && !this.filter.test(tag)) continue;
        if (!this.sections.has(meta.kind)) continue;
        if (!wanted.has(meta.kind)) wanted.set(meta.kind, []);
        wanted.get(meta.kind).push([cardKey(run, tag), run, tag, meta]);
        total += 1;
      }
    }
    const keep = new Set();
    for (const [kind, section] of this.sections) {
      // Same tag of different runs side by side: that is what users compare.
      const entries = (wanted.get(kind) || []).sort(
        (a, b) => naturalCompare(a[2], b[2]) || naturalCompare(a[1], b[1]),
      );
      const nodes = entries.map(([key, run, tag, meta]) => {
        keep.add(key);
        let card = this.cards.get(key);
        if (card && card.kind !== meta.kind) {
          this.dropCard(key, card);
          card = undefined;
        }
        if (!card) {
          card = new Card(run, tag, meta);
          this.cards.set(key, card);
          this.observer.observe(card.element);
        }
        return card.element;
      });
      section.grid.replaceChildren(...nodes);
      section.count.textContent = String(nodes.length);
      section.node.hidden = nodes.length === 0;
    }
    for (const [key, card] of this.cards) if (!keep.has(key)) this.dropCard(key, card);
    this.summary.textContent = `${total} chart${total === 1 ? '' : 's'}`;
    if (!tagsSeen) {
      this.setNotice('No data from torch_visualization in this log directory yet. Log some with '
        + 'SummaryWriter.add_weight_heatmap, add_class_pie, add_gradient_bars or add_scatter '
        + '(from torch_visualization), then press Reload.');
    } else if (!this.selected.size) {
      this.setNotice('No run selected.');
    } else if (!total) {
      this.setNotice('No tag matches the filter in the selected runs.');
    } else {
      this.setNotice('');
    }
  }

  dropCard(key, card) {
    this.observer.unobserve(card.element);
    card.dispose();
    this.cards.delete(key);
  }

  onVisible(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const card = this.cardFor(entry.target);
      if (card) {
        card.activate();
        this.observer.unobserve(entry.target);
      }
    }
  }

  cardFor(element) {
    return this.cards.get(cardKey(element.dataset.run, element.dataset.tag));
  }

  setNotice(text, isError = false) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
    this.notice.classList.toggle('is-error', isError);
  }

  destroy() {
    this.observer.disconnect();
    window.removeEventListener('resize', this.onResize);
    this.cards.forEach((card) => card.dispose());
    this.cards.clear();
    this.listingToken = (this.listingToken || 0) + 1;
  }
}

// Run and tag names can contain anything; NUL cannot appear in either.
function cardKey(run, tag) {
  return `${run}\u0000${tag}`;
}

// "run10" after "run9", like TensorBoard sorts runs.
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
function naturalCompare(a, b) {
  return collator.compare(a, b);
}

/**
 * Adds style.css once; resolves when it has loaded (or failed: the page
 * still works unstyled, so a missing sheet must not block it).
 */
function ensureStylesheet() {
  if (document.querySelector('link[data-tv-style]')) return Promise.resolve();
  // Resolved against this module, so it works whatever the page's base is.
  const link = el('link', {
    rel: 'stylesheet',
    href: new URL('./style.css', import.meta.url).href,
    dataset: { tvStyle: '' },
  });
  const loaded = new Promise((resolve) => {
    link.addEventListener('load', resolve, { once: true });
    link.addEventListener('error', resolve, { once: true });
    setTimeout(resolve, 3000);
  });
  document.head.append(link);
  return loaded;
}
