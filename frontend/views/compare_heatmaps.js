/**
 * Compare view of a heatmap tag: the runs' grids side by side on ONE
 * diverging colour scale (the largest |value| over all runs), one shared
 * colour bar, and a difference panel (run A minus run B, its own diverging
 * scale) when their shapes match. Non-finite cells are black with a red
 * frame; hover shows row, column and value (A, B and A − B on the
 * difference).
 *
 * update(datasets, {diff: [runA, runB] | null})
 * DOM hooks: `.diff-toggle`, `.compare-panel`, `.diff-panel`, `.diff-note`.
 */

import { divergingColor, formatValue, rgbString, symmetricMax } from '../charts.js';
import { el } from '../dom.js';
import { difference, shapeOf } from '../stats.js';
import { createColorbar } from './legend.js';
import { createMatrixCanvas } from './matrix.js';

const DIVERGING_CSS = [-1, -0.5, 0, 0.5, 1].map((t) => rgbString(divergingColor(t, 1)));
const PANEL_HEIGHT = 170;

function asGrid(values) {
  return values.length && !Array.isArray(values[0]) ? [values] : values;
}

function colorFor(maxAbs) {
  return (v) => (typeof v === 'number' && Number.isFinite(v) ? divergingColor(v, maxAbs) : [0, 0, 0]);
}

export function createCompareHeatmapsView(container, tooltip) {
  const toggle = el('input', { type: 'checkbox', class: 'diff-toggle', 'aria-label': 'show the difference A minus B' });
  toggle.checked = true;
  const panels = el('div', { class: 'compare-panels' });
  const shared = createColorbar();
  const diffPanel = el('div', { class: 'compare-panel diff-panel', hidden: true });
  const diffBar = createColorbar();
  const diffNote = el('div', { class: 'view-note diff-note', hidden: true });
  container.append(
    el('div', { class: 'view-toolbar' }, [el('label', { class: 'toggle' }, [toggle, ' difference A − B'])]),
    panels, shared.element, diffNote, diffPanel,
  );
  let mats = []; // [{matrix, run, grid}]
  let diff = null; // {matrix, a, b, grid}

  toggle.addEventListener('change', () => {
    diffPanel.hidden = !toggle.checked || !diff;
    if (!diffPanel.hidden && diff) diff.matrix.draw();
  });

  function panelFor(caption, className, ariaLabel) {
    const matrix = createMatrixCanvas({
      className, ariaLabel, shape: 'aspect', height: PANEL_HEIGHT, left: 26, frameNonFinite: true,
    });
    return { matrix, node: el('div', { class: 'compare-panel' }, [caption, matrix.canvas]) };
  }

  function caption(run, color, text) {
    return el('div', { class: 'panel-caption' }, [
      color ? el('span', { class: 'swatch swatch-round', style: { background: color } }) : null,
      el('span', { class: 'panel-run', text: run }),
      el('span', { class: 'panel-step', text }),
    ]);
  }

  function build(datasets, options) {
    const withData = datasets.filter((d) => d.data && d.data.values.length);
    const maxAbs = Math.max(0, ...withData.map((d) => symmetricMax(d.data.values)));
    mats = [];
    panels.replaceChildren(...datasets.map(({ run, color, step, data }) => {
      if (!data || !data.values.length) {
        return el('div', { class: 'compare-panel is-empty' }, [
          caption(run, color, ''), el('div', { class: 'panel-empty', text: 'no data for this run yet' }),
        ]);
      }
      const grid = asGrid(data.values);
      const shape = shapeOf(grid).join('×');
      const panel = panelFor(caption(run, color, `step ${step} · ${shape}`), 'compare-heatmap-canvas', `heatmap of ${run}`);
      panel.node.dataset.run = run;
      mats.push({ matrix: panel.matrix, run, grid, colorOf: colorFor(maxAbs) });
      panel.matrix.onHover((hit, event) => {
        if (!hit) return tooltip.hide();
        const v = grid[hit.row][hit.col];
        return tooltip.show(event, [run, ['row', String(hit.row)], ['column', String(hit.col)],
          ['value', formatValue(v), Number.isFinite(v) ? '' : 'is-nonfinite']]);
      });
      return panel.node;
    }));
    shared.set({
      colors: DIVERGING_CSS,
      min: formatValue(-maxAbs),
      max: formatValue(maxAbs),
      title: 'one colour scale for every run',
      special: withData.some((d) => d.data.nonfinite > 0 || hasNonFinite(d.data.values)) ? ['nonfiniteDark'] : [],
    });
    buildDiff(withData, options);
  }

  function buildDiff(withData, options) {
    diff = null;
    const pick = (name) => withData.find((d) => d.run === name);
    let [a, b] = options && options.diff ? options.diff.map(pick) : [];
    if (!a || !b || a === b) [a, b] = withData;
    if (!a || !b) {
      diffNote.hidden = false;
      diffNote.textContent = 'Difference view: needs two runs with data.';
      diffPanel.hidden = true;
      return;
    }
    const ga = asGrid(a.data.values);
    const gb = asGrid(b.data.values);
    // Pooled grids of different tensors can share a shape: the original
    // shapes must match too, or the difference means nothing.
    const origin = (d, g) => (d.data.original_shape && d.data.original_shape.length ? d.data.original_shape : shapeOf(g));
    const oa = origin(a, ga).join('×');
    const ob = origin(b, gb).join('×');
    const grid = oa === ob ? difference(ga, gb) : null;
    if (!grid) {
      diffNote.hidden = false;
      diffNote.textContent = `No difference view: shapes differ (${a.run} ${oa}, ${b.run} ${ob}).`;
      diffPanel.hidden = true;
      return;
    }
    diffNote.hidden = true;
    const maxAbs = symmetricMax(grid);
    const matrix = createMatrixCanvas({
      className: 'diff-canvas', ariaLabel: `difference ${a.run} minus ${b.run}`,
      shape: 'aspect', height: PANEL_HEIGHT, left: 26, frameNonFinite: true,
    });
    diffPanel.replaceChildren(
      caption(`${a.run} − ${b.run}`, null, `steps ${a.step} and ${b.step}`),
      matrix.canvas,
      diffBar.element,
    );
    diffBar.set({
      colors: DIVERGING_CSS,
      min: formatValue(-maxAbs),
      max: formatValue(maxAbs),
      title: `${a.run} minus ${b.run}`,
      special: hasNonFinite(grid) ? ['nonfiniteDark'] : [],
    });
    matrix.onHover((hit, event) => {
      if (!hit) return tooltip.hide();
      const d = grid[hit.row][hit.col];
      return tooltip.show(event, [`${a.run} − ${b.run}`, ['row', String(hit.row)], ['column', String(hit.col)],
        [a.run, formatValue(ga[hit.row][hit.col])], [b.run, formatValue(gb[hit.row][hit.col])],
        ['difference', formatValue(d), Number.isFinite(d) ? '' : 'is-nonfinite']]);
    });
    diff = { matrix, grid, colorOf: colorFor(maxAbs), a: a.run, b: b.run };
    diffPanel.hidden = !toggle.checked;
  }

  function drawAll() {
    for (const m of mats) m.matrix.set(m.grid, { colorOf: m.colorOf });
    if (diff) diff.matrix.set(diff.grid, { colorOf: diff.colorOf });
  }

  return {
    update(datasets, options) {
      build(datasets, options);
      drawAll();
    },
    redraw: () => {
      mats.forEach((m) => m.matrix.draw());
      if (diff) diff.matrix.draw();
    },
    exportParts: () => ({
      canvases: [
        ...mats.map((m) => ({ canvas: m.matrix.canvas, caption: m.run })),
        ...(diff && toggle.checked ? [{ canvas: diff.matrix.canvas, caption: `${diff.a} − ${diff.b}` }] : []),
      ],
      colorbars: [shared.exportPart(), diff && toggle.checked ? diffBar.exportPart() : null],
      notes: diffNote.hidden ? [] : [diffNote.textContent],
    }),
  };
}

function hasNonFinite(values) {
  return values.some((v) => (Array.isArray(v) ? hasNonFinite(v) : !Number.isFinite(v)));
}
