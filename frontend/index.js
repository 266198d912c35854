/**
 * Entry point of the "Model Insight" tab. TensorBoard loads this module in a
 * same-origin iframe whose base URL is /data/plugin/torch_visualization/ and
 * calls `render()`.
 *
 * The page: a run selector (one checkbox per run, class `run-toggle`, plus
 * select-all), a tag regex filter (`tag-filter`), a view switch (`view-mode`
 * buttons: steps, over time, compare runs), a "link step sliders" toggle
 * (`link-steps`), an error banner, the Findings strip (findings.js: what
 * the diagnosis engine found per selected run; a click opens the card at
 * the finding's step, see openFinding), and cards grouped in sections by chart
 * kind (plan.js decides which) and, inside a section with many cards, in
 * collapsible groups by module path (grouping.js, cardgroups.js: a closed
 * group builds no cards). Cards fetch their data only when scrolled into
 * view, so hundreds of cards stay cheap. The tag filter is a regular
 * expression, or a module path (`blocks.3/attn`) selecting that subtree.
 *
 * Live: TensorBoard's reload (button and timer) reaches the tab through the
 * host message channel (host.js); the tab then reloads the listing and the
 * cards on screen and asks for the findings again, keeping selection,
 * slider positions and scroll.
 * State (runs, filter, view, compare pair, linked sliders) lives in
 * TensorBoard's URL (urlstate.js) and survives a page reload.
 */

import { createBanner, reportError } from './banner.js';
import { Card } from './card.js';
import { runColor } from './colors.js';
import { CompareBar } from './comparebar.js';
import { CompareCard } from './comparecard.js';
import { CardGroups } from './cardgroups.js';
import { debounce, el } from './dom.js';
import { FindingsStrip } from './findings.js';
import { connectHost, MESSAGES } from './host.js';
import {
  AUTO_COLLAPSE_CARDS, groupSpecs, makeTagFilter, moduleGroup,
} from './grouping.js';
import { fetchTags } from './model.js';
import {
  cardKey, naturalCompare, OVERTIME_KINDS, planCards, SECTIONS,
} from './plan.js';
import { RunList } from './runlist.js';
import { SeriesCard } from './seriescard.js';
import {
  decodeState, PLUGIN_NAME, readState, stateWindow, VIEWS, writeState,
} from './urlstate.js';

const VIEW_TITLES = { steps: 'Steps', overtime: 'Over time', compare: 'Compare runs' };

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
  await page.start();
}

/** Page state and the parts of the DOM that depend on it. */
class Page {
  constructor(root) {
    this.root = root;
    this.runs = {}; // run -> tag -> metadata, as /tags returns it
    this.selected = new Set();
    this.known = new Set(); // runs seen before: new runs start selected
    this.urlRuns = null; // the selection read from the URL, applied once
    this.filterText = '';
    this.filter = null; // {test(tag)} (grouping.makeTagFilter), null = everything
    this.groupOpen = new Map(); // kind + group -> open, as the user left it
    this.view = 'steps';
    this.diff = null; // [runA, runB] chosen for the difference view
    this.link = false;
    this.reloads = 0;
    this.cards = new Map(); // plan key -> card
    this.cardOf = new WeakMap(); // card element -> card
    this.observer = new IntersectionObserver((entries) => this.onVisible(entries), {
      rootMargin: '300px 0px',
    });
    this.onResize = debounce(() => this.cards.forEach((c) => c.redraw()), 100);
    window.addEventListener('resize', this.onResize);
    this.saveState = debounce(() => writeState(window, this.urlState()), 50);
    this.build();
  }

  build() {
    document.documentElement.lang = document.documentElement.lang || 'en';
    this.banner = createBanner();
    this.runList = new RunList((selected) => {
      this.selected = selected;
      this.update();
      this.saveState();
    });
    this.filterInput = el('input', {
      type: 'search',
      class: 'tag-filter',
      placeholder: 'Filter tags (regular expression, or a module path: blocks.3/attn)',
      'aria-label': 'filter tags by regular expression or module path',
      spellcheck: 'false',
      autocomplete: 'off',
    });
    this.filterError = el('div', { class: 'filter-error', role: 'alert', hidden: true });
    const applyFilter = debounce(() => this.setFilter(this.filterInput.value), 150);
    this.filterInput.addEventListener('input', applyFilter);
    this.filterInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') applyFilter.flush();
    });
    this.modeButtons = VIEWS.map((mode) => {
      const button = el('button', {
        type: 'button', class: 'view-mode-button', text: VIEW_TITLES[mode], dataset: { mode },
        'aria-pressed': 'false',
      });
      button.addEventListener('click', () => this.setView(mode));
      return button;
    });
    this.linkToggle = el('input', { type: 'checkbox', class: 'link-steps', 'aria-label': 'link step sliders' });
    this.linkToggle.addEventListener('change', () => {
      this.link = this.linkToggle.checked;
      this.saveState();
    });
    this.summary = el('span', { class: 'summary', role: 'status' });
    this.reloadButton = el('button', { type: 'button', class: 'reload-button', text: 'Reload' });
    this.reloadButton.addEventListener('click', () => this.reload());
    this.compareBar = new CompareBar((pair) => {
      this.diff = pair;
      this.saveState();
      this.cards.forEach((card) => card.refreshDiff && card.refreshDiff());
    });
    this.notice = el('div', { class: 'page-notice', role: 'status' });
    this.findings = new FindingsStrip({
      onOpen: (target, item) => this.openFinding(target, item),
      canOpen: (target) => Boolean(this.runs[target.run] && this.runs[target.run][target.tag]),
    });
    this.sections = new Map();
    const sectionNodes = SECTIONS.map(([kind, title]) => {
      const count = el('span', { class: 'section-count' });
      const grid = el('div', { class: 'card-grid' });
      const groups = new CardGroups((names, open) => {
        for (const name of names) this.groupOpen.set(`${kind}\u0000${name}`, open);
        this.update();
      });
      const node = el('section', { class: 'kind-section', dataset: { kind }, hidden: true }, [
        el('h2', { class: 'section-title' }, [title, count]),
        grid,
        groups.element,
      ]);
      this.sections.set(kind, { node, grid, count, groups });
      return node;
    });
    this.app = el('div', { class: 'tv-app', dataset: { view: this.view, reloads: '0' } }, [
      this.runList.element,
      el('main', { class: 'content' }, [
        this.banner.element,
        el('div', { class: 'toolbar' }, [
          el('div', { class: 'filter-box' }, [this.filterInput, this.filterError]),
          el('div', { class: 'view-mode', role: 'group', 'aria-label': 'view' }, this.modeButtons),
          el('label', { class: 'toggle link-label', title: 'Moving one step slider moves all cards' }, [
            this.linkToggle, ' link step sliders',
          ]),
          this.summary,
          this.reloadButton,
        ]),
        this.findings.element,
        this.compareBar.element,
        this.notice,
        ...sectionNodes,
      ]),
    ]);
    this.root.replaceChildren(this.app);
  }

  /** Restores the URL state, connects to TensorBoard, loads the listing. */
  async start() {
    this.host = connectHost(window);
    if (this.host) {
      this.host.listen(MESSAGES.DATA_RELOADED, () => this.liveReload());
    }
    this.applyState(await this.initialState());
    await this.reload();
  }

  async initialState() {
    // Same origin (TensorBoard): read the parent's hash. Otherwise ask the
    // host for our URL entries.
    if (stateWindow(window) === window && this.host) {
      try {
        const entries = await this.host.request(MESSAGES.GET_URL_DATA, { pluginName: PLUGIN_NAME }, 1500);
        return decodeState(entries || {});
      } catch (_) {
        // No answer: start from the defaults.
      }
    }
    return readState(window);
  }

  applyState(state) {
    this.urlRuns = state.runs;
    this.filterText = state.filter;
    this.filterInput.value = state.filter;
    this.filter = this.compileFilter(state.filter);
    this.view = state.view;
    this.diff = state.diff;
    this.link = state.link;
    this.linkToggle.checked = state.link;
    this.syncViewButtons();
  }

  urlState() {
    const runs = Object.keys(this.runs);
    const all = runs.length > 0 && runs.every((r) => this.selected.has(r));
    let selection = all ? null : [...this.selected].sort(naturalCompare);
    // Before the first listing the selection is still the URL's.
    if (!runs.length) selection = this.urlRuns;
    return {
      runs: selection,
      filter: this.filterText,
      view: this.view,
      diff: this.diff,
      link: this.link,
    };
  }

  /** TensorBoard reloaded (its button or its timer). */
  liveReload() {
    this.reloads += 1;
    this.app.dataset.reloads = String(this.reloads);
    return this.reload();
  }

  /** Fetches the run/tag listing and refreshes the cards, keeping state. */
  async reload() {
    if (!Object.keys(this.runs).length) this.setNotice('Loading runs and tags…');
    // Busy, not disabled: a disabled button would drop keyboard focus.
    this.reloadButton.setAttribute('aria-busy', 'true');
    const token = (this.listingToken = (this.listingToken || 0) + 1);
    try {
      const { runs } = await fetchTags();
      if (token !== this.listingToken) return;
      this.runs = runs;
      for (const run of Object.keys(runs)) {
        const wanted = this.urlRuns ? this.urlRuns.includes(run) : !this.known.has(run);
        if (wanted) this.selected.add(run);
        this.known.add(run);
      }
      this.urlRuns = null;
      for (const run of [...this.selected]) if (!(run in runs)) this.selected.delete(run);
      const sorted = this.sortedRuns();
      this.runColors = Object.fromEntries(sorted.map((run, i) => [run, runColor(i)]));
      const counts = Object.fromEntries(sorted.map((run) => [run, Object.keys(runs[run]).length]));
      this.runList.set(sorted, counts, this.runColors, this.selected);
      const kept = new Set(this.cards.values());
      // New steps may change what the engine finds: ask again.
      this.findings.refresh();
      this.update();
      this.refreshCards(kept);
      this.saveState();
    } catch (err) {
      if (token !== this.listingToken) return;
      this.setNotice(`Could not load the tag listing: ${err.message}`, true);
      reportError('tag listing', err);
    } finally {
      if (token === this.listingToken) this.reloadButton.removeAttribute('aria-busy');
    }
  }

  /**
   * Cards that stayed refresh too (new steps may have been logged): those
   * near the screen now, the others when they scroll into view, so that
   * TensorBoard's reload timer does not refetch hundreds of cards.
   */
  refreshCards(kept) {
    const margin = 300;
    const height = window.innerHeight;
    kept.forEach((card) => {
      if (!card.loaded || card.disposed) return;
      // A card of a closed group is detached: refresh it once it is shown.
      if (!card.element.isConnected) {
        card.stale = true;
        this.observer.observe(card.element);
        return;
      }
      const box = card.element.getBoundingClientRect();
      if (box.bottom >= -margin && box.top <= height + margin) {
        card.reload();
      } else {
        card.stale = true;
        this.observer.observe(card.element);
      }
    });
  }

  sortedRuns() {
    return Object.keys(this.runs).sort(naturalCompare);
  }

  /** Applies a filter text; an invalid regex keeps the last valid filter. */
  setFilter(text) {
    if (!text) {
      this.filter = null;
      this.showFilterError('');
    } else {
      try {
        this.filter = makeTagFilter(text, this.allTags());
        this.showFilterError('');
      } catch (err) {
        // The engine's message already names the pattern and the problem.
        this.showFilterError(err.message);
        return;
      }
    }
    this.filterText = text;
    this.update();
    this.saveState();
  }

  /** Every tag of every run (a module path in the filter is read against them). */
  allTags() {
    const tags = new Set();
    for (const run of Object.values(this.runs)) for (const tag of Object.keys(run)) tags.add(tag);
    return tags;
  }

  /** The filter of `text` over the current tags; null when empty or invalid. */
  compileFilter(text) {
    try {
      return makeTagFilter(text, this.allTags());
    } catch (_) {
      return null;
    }
  }

  showFilterError(message) {
    this.filterError.textContent = message;
    this.filterError.hidden = !message;
    this.filterInput.classList.toggle('is-invalid', Boolean(message));
    this.filterInput.setAttribute('aria-invalid', message ? 'true' : 'false');
  }

  setView(mode) {
    if (mode === this.view || !VIEWS.includes(mode)) return;
    this.view = mode;
    this.syncViewButtons();
    this.update();
    this.saveState();
  }

  syncViewButtons() {
    for (const button of this.modeButtons) {
      button.setAttribute('aria-pressed', String(button.dataset.mode === this.view));
    }
    this.app.dataset.view = this.view;
    this.compareBar.show(this.view === 'compare');
  }

  /** The compare pair for difference views: chosen, else the first two. */
  diffPair() {
    const runs = this.sortedRuns().filter((r) => this.selected.has(r));
    if (this.diff && this.diff.every((r) => runs.includes(r)) && this.diff[0] !== this.diff[1]) return this.diff;
    return runs.length >= 2 ? runs.slice(0, 2) : null;
  }

  /** Makes the cards match selection + filter + view, keeping cards that stay. */
  update() {
    // New tags may turn a typed module path into one that names them.
    if (this.filterText) this.filter = this.compileFilter(this.filterText) || this.filter;
    const plan = planCards({ runs: this.runs, selected: this.selected, filter: this.filter, view: this.view });
    const keep = new Set();
    for (const [kind, section] of this.sections) {
      const specs = plan.sections.get(kind) || [];
      const cardNode = (spec) => {
        keep.add(spec.key);
        let card = this.cards.get(spec.key);
        if (card && card.kind !== spec.kind) {
          this.dropCard(spec.key, card);
          card = undefined;
        }
        if (!card) {
          card = this.makeCard(spec);
          this.cards.set(spec.key, card);
          this.cardOf.set(card.element, card);
          this.observer.observe(card.element);
        }
        return card.element;
      };
      // Module groups (grouping.js): cards are made for open groups only;
      // a closed group keeps the cards it had (slider positions), detached.
      const nodes = [];
      const groups = [];
      const closedByDefault = specs.length > AUTO_COLLAPSE_CARDS;
      for (const group of groupSpecs(specs)) {
        if (group.name === null) {
          nodes.push(...group.specs.map(cardNode));
          continue;
        }
        const open = this.groupOpen.get(`${kind}\u0000${group.name}`) ?? !closedByDefault;
        if (!open) group.specs.forEach((spec) => this.cards.has(spec.key) && keep.add(spec.key));
        groups.push({
          name: group.name, count: group.specs.length, open, nodes: open ? group.specs.map(cardNode) : [],
        });
      }
      // Re-inserting the same nodes would still cost a layout; skip it.
      const current = section.grid.children;
      const same = current.length === nodes.length && nodes.every((n, i) => current[i] === n);
      if (!same) section.grid.replaceChildren(...nodes);
      section.grid.hidden = nodes.length === 0;
      section.groups.set(groups);
      section.count.textContent = String(specs.length);
      section.node.hidden = specs.length === 0;
    }
    for (const [key, card] of this.cards) if (!keep.has(key)) this.dropCard(key, card);
    if (this.view === 'compare') {
      this.compareBar.set(this.sortedRuns().filter((r) => this.selected.has(r)), this.diffPair());
    }
    this.findings.setRuns(this.sortedRuns().filter((r) => this.selected.has(r)), this.runColors);
    this.summary.textContent = `${plan.total} chart${plan.total === 1 ? '' : 's'}`;
    this.setNotice(this.noticeFor(plan));
  }

  noticeFor(plan) {
    if (!plan.tagsSeen) {
      return 'No data from torch_visualization in this log directory yet. Log some with '
        + 'SummaryWriter.add_weight_heatmap, add_class_pie, add_gradient_bars, add_scatter or '
        + 'add_confusion_matrix (from torch_visualization), then press Reload.';
    }
    if (!this.selected.size) return 'No run selected.';
    const notes = [];
    if (this.view === 'compare' && this.selected.size < 2) notes.push('Select two or more runs to compare them.');
    if (this.view === 'overtime' && plan.hidden) {
      notes.push(`${plan.hidden} heatmap, attention, scatter or confusion chart${plan.hidden === 1 ? ' has' : 's have'} `
        + 'no over-time view: switch to Steps to see them.');
    }
    if (!plan.total) notes.push('No tag matches the filter in the selected runs.');
    return notes.join(' ');
  }

  makeCard(spec) {
    const onPick = (source, step) => this.onPick(source, step);
    if (spec.type === 'series') return new SeriesCard(spec.run, spec.tag, spec.meta);
    if (spec.type === 'compare') {
      return new CompareCard(spec, {
        runColors: this.runColors, runOrder: naturalCompare, diff: () => this.diffPair(), onPick,
      });
    }
    return new Card(spec.run, spec.tag, spec.meta, { onPick });
  }

  /**
   * Opens the card a finding points at: the tag shown (the filter cleared
   * if it hides it), the over-time view or the steps view, the card
   * scrolled to, at the finding's step, its layers outlined.
   * @param {{run: string, tag: string, overtime: boolean, step?: number,
   *   labels: string[], log: boolean}} target (findingsmodel.findingTarget)
   * @param {{message: string}} item the finding as the strip shows it
   */
  openFinding(target, item) {
    const meta = this.runs[target.run] && this.runs[target.run][target.tag];
    if (!meta || !this.selected.has(target.run)) return;
    if (this.filter && !this.filter.test(target.tag)) {
      this.filterInput.value = '';
      this.setFilter('');
    }
    // Kinds without an over-time picture open at the finding's step.
    const overtime = target.overtime && OVERTIME_KINDS.includes(meta.kind);
    const mode = overtime ? 'overtime' : 'steps';
    // The card's module group may be closed: open it.
    const group = moduleGroup(target.tag);
    if (group !== null) this.groupOpen.set(`${meta.kind}\u0000${group}`, true);
    if (mode !== this.view) this.setView(mode);
    else this.update();
    const card = this.cards.get(cardKey(overtime ? 'series' : 'step', [target.run], target.tag));
    if (!card) return;
    if (this.focused && this.focused !== card && !this.focused.disposed) this.focused.unfocus();
    this.focused = card;
    card.focus({
      step: overtime ? undefined : target.step, labels: target.labels, log: target.log,
      note: `${item.title}: ${item.message}`,
    });
    card.element.scrollIntoView({ block: 'center' });
    // Keyboard users continue from the card they were taken to.
    card.element.setAttribute('tabindex', '-1');
    card.element.focus({ preventScroll: true });
  }

  /** A user moved a slider: with linked sliders every card follows. */
  onPick(source, step) {
    if (!this.link) return;
    this.cards.forEach((card) => {
      if (card !== source) card.followStep(step);
    });
  }

  dropCard(key, card) {
    this.observer.unobserve(card.element);
    card.dispose();
    this.cards.delete(key);
  }

  onVisible(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const card = this.cardOf.get(entry.target);
      if (card) {
        if (card.stale) {
          card.stale = false;
          card.reload();
        } else {
          card.activate();
        }
        this.observer.unobserve(entry.target);
      }
    }
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
    this.banner.dispose();
    this.findings.dispose();
    this.saveState.cancel();
    if (this.host) this.host.close();
    this.listingToken = (this.listingToken || 0) + 1;
  }
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
