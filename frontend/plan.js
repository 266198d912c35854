/**
 * Which cards the page shows, pure (tests/js/plan.test.mjs): from the
 * /tags listing, the selected runs, the tag filter and the view mode.
 *
 * - steps: one step card per run + tag (every kind);
 * - overtime: one over-time card per run + tag for the kinds that have an
 *   over-time picture (bars, pie); the other tags are counted as hidden;
 * - compare: one card per tag for the kinds with a compare picture (bars,
 *   pie, heatmap), holding every selected run that logged it; other kinds
 *   keep one step card per run, side by side.
 */

/** Section order and titles, by chart kind. */
export const SECTIONS = Object.freeze([
  ['heatmap', 'Heatmaps'],
  ['attention', 'Attention'],
  ['pie', 'Pies'],
  ['bars', 'Bars'],
  ['confusion', 'Confusion matrices'],
  ['scatter', 'Scatter'],
]);

/** Kinds with an over-time view. */
export const OVERTIME_KINDS = Object.freeze(['bars', 'pie']);
/** Kinds with a multi-run compare view. */
export const COMPARE_KINDS = Object.freeze(['bars', 'pie', 'heatmap']);

// "run10" after "run9", like TensorBoard sorts runs.
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

/** Natural order of names ("run2" < "run10"). */
export function naturalCompare(a, b) {
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Unique key of a card: the view, the runs and the tag. Run and tag names
 * can contain anything but NUL.
 */
export function cardKey(type, runs, tag) {
  return [type, ...runs, '', tag].join('\u0000');
}

/**
 * @param {{runs: Object<string, Object<string, {kind: string}>>,
 *   selected: Set<string>, filter: RegExp|null, view: string}} input
 * @returns {{sections: Map<string, Object[]>, total: number, hidden: number,
 *   tagsSeen: number}} sections: kind -> card specs in display order; a spec
 *   is {key, type: 'step'|'series'|'compare', kind, tag, run?, runs?, absent?,
 *   meta?, metas?}; absent: selected runs without the tag (compare cards show
 *   them as empty panels)
 */
export function planCards({ runs, selected, filter, view }) {
  const known = new Set(SECTIONS.map(([kind]) => kind));
  const sections = new Map(SECTIONS.map(([kind]) => [kind, []]));
  const groups = new Map(); // compare: kind + tag -> spec
  let total = 0;
  let hidden = 0;
  let tagsSeen = 0;
  const runNames = Object.keys(runs).sort(naturalCompare);
  for (const run of runNames) {
    for (const [tag, meta] of Object.entries(runs[run])) {
      tagsSeen += 1;
      if (!selected.has(run) || !known.has(meta.kind)) continue;
      if (filter && !filter.test(tag)) continue;
      if (view === 'overtime' && !OVERTIME_KINDS.includes(meta.kind)) {
        hidden += 1;
        continue;
      }
      if (view === 'compare' && COMPARE_KINDS.includes(meta.kind)) {
        const gk = `${meta.kind}\u0000${tag}`;
        let spec = groups.get(gk);
        if (!spec) {
          spec = { type: 'compare', kind: meta.kind, tag, runs: [], metas: {} };
          groups.set(gk, spec);
          sections.get(meta.kind).push(spec);
          total += 1;
        }
        spec.runs.push(run);
        spec.metas[run] = meta;
        continue;
      }
      const type = view === 'overtime' ? 'series' : 'step';
      sections.get(meta.kind).push({ key: cardKey(type, [run], tag), type, kind: meta.kind, tag, run, meta });
      total += 1;
    }
  }
  for (const specs of sections.values()) {
    for (const spec of specs) {
      if (spec.type !== 'compare') continue;
      // Selected runs without this tag get an empty panel ("no data yet").
      spec.absent = runNames.filter((run) => selected.has(run) && !spec.runs.includes(run));
      spec.key = cardKey('compare', [...spec.runs, '', ...spec.absent], spec.tag);
    }
    // Same tag of different runs side by side: that is what users compare.
    specs.sort((a, b) => naturalCompare(a.tag, b.tag) || naturalCompare(a.run || '', b.run || ''));
  }
  return { sections, total, hidden, tagsSeen };
}
