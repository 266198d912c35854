/**
 * Confusion-matrix view: true classes in rows, predicted classes in
 * columns, class names on both axes, a viridis colour scale from 0, counts
 * or row-normalised shares (toggle), the numbers in the cells when they fit,
 * and a hover with the count, the share of the true class and the
 * precision/recall of the classes involved. Non-finite cells are red.
 *
 * DOM hooks: `.normalize-toggle`, `.confusion-canvas`, `.confusion-summary`.
 */

import { formatPercent, formatValue, labelFor } from '../charts.js';
import { colorStops, sequentialColor, sequentialScale, viridisColor } from '../colors.js';
import { el } from '../dom.js';
import { confusionStats, rowNormalize } from '../stats.js';
import { createColorbar } from './legend.js';
import { createMatrixCanvas } from './matrix.js';

/**
 * Mounts a confusion matrix in `container`.
 * @param {HTMLElement} container the card body
 * @param {{show: Function, hide: Function}} tooltip the card's tooltip
 * @returns {{update: function(Object): void, redraw: function(): void, exportParts: Function}}
 */
export function createConfusionView(container, tooltip) {
  const toggle = el('input', { type: 'checkbox', class: 'normalize-toggle', 'aria-label': 'normalise rows' });
  const summary = el('div', { class: 'confusion-summary' });
  const colorbar = createColorbar();
  let matrix = null;
  let counts = [];
  let labels = [];
  let stats = null;
  let focused = new Set(); // class names a clicked finding points at (predicted columns)

  const mount = () => {
    const longest = Math.max(1, ...counts.map((_, i) => labelFor(labels, i).length));
    matrix = createMatrixCanvas({
      className: 'confusion-canvas',
      ariaLabel: describe(),
      shape: 'square',
      height: 300,
      rowLabels: 'all',
      colLabels: 'all',
      left: Math.max(26, Math.min(100, 10 + longest * 6.5)),
      xTitle: 'predicted',
      yTitle: 'true',
    });
    matrix.onHover(onHover);
    container.replaceChildren(
      el('div', { class: 'view-toolbar' }, [el('label', { class: 'toggle' }, [toggle, ' row-normalised'])]),
      matrix.canvas,
      colorbar.element,
      summary,
    );
  };

  toggle.addEventListener('change', () => draw());

  function draw() {
    if (!matrix) return;
    const norm = toggle.checked;
    const shown = norm ? rowNormalize(counts) : counts;
    // Shares always span 0..100%, so colours mean the same in every card.
    const scale = sequentialScale(norm ? [shown, 1] : shown, { zero: true });
    const badRow = counts.map((row) => row.some((v) => !Number.isFinite(v)));
    matrix.set(shown, {
      colorOf: (v) => sequentialColor(scale, v),
      rowName: (i) => labelFor(labels, i),
      colName: (j) => labelFor(labels, j),
      rowFlag: (i) => badRow[i],
      colFlag: (j) => counts.some((row) => !Number.isFinite(row[j])),
      colMark: (j) => focused.has(labelFor(labels, j)),
      cellText: (v) => (norm ? (Number.isFinite(v) ? `${Math.round(v * 100)}` : formatValue(v)) : formatValue(v)),
    });
    colorbar.set({
      colors: colorStops(viridisColor),
      min: norm ? '0%' : formatValue(scale.domain[0]),
      max: norm ? formatPercent(scale.domain[1] * 100) : formatValue(scale.domain[1]),
      title: norm ? 'share of the true class (cells in %)' : 'count',
      special: badRow.some(Boolean) ? ['nonfinite'] : [],
    });
    summary.textContent = `accuracy ${formatPercent(stats.accuracy * 100)} · ${formatValue(stats.total)} examples`
      + ' · rows: true class, columns: predicted class';
  }

  function onHover(hit, event) {
    if (!hit) {
      tooltip.hide();
      return;
    }
    const { row, col } = hit;
    const count = counts[row][col];
    const share = stats.support[row] > 0 ? (count / stats.support[row]) * 100 : NaN;
    const ok = (v) => (Number.isFinite(v) ? '' : 'is-nonfinite');
    tooltip.show(event, [
      `true ${labelFor(labels, row)} → predicted ${labelFor(labels, col)}`,
      ['count', formatValue(count), ok(count)],
      [`of true ${labelFor(labels, row)}`, formatPercent(share)],
      [`precision (${labelFor(labels, col)})`, formatRatio(stats.precision[col])],
      [`recall (${labelFor(labels, row)})`, formatRatio(stats.recall[row])],
    ]);
  }

  function describe() {
    const names = counts.map((_, i) => labelFor(labels, i));
    const shown = names.length > 40 ? [...names.slice(0, 40), '…'] : names;
    return `confusion matrix, rows: true class, columns: predicted class; classes: ${shown.join(', ')}`;
  }

  return {
    update(data) {
      counts = data.values;
      const same = labels.length === (data.labels || []).length && matrix;
      labels = data.labels || [];
      stats = confusionStats(counts);
      // Label widths decide the margins: rebuild only when names change.
      if (!same) mount();
      draw();
    },
    redraw: () => matrix && matrix.draw(),
    /**
     * Outlines the predicted-class columns of `labels` (a clicked finding:
     * a class the model predicts for everything).
     * @returns {string[]} the labels that are classes of this chart
     */
    focus({ labels: names = [] } = {}) {
      focused = new Set(names);
      draw();
      const present = new Set(counts.map((_, i) => labelFor(labels, i)));
      return names.filter((name) => present.has(name));
    },
    exportParts: () => ({
      canvases: matrix ? [{ canvas: matrix.canvas }] : [],
      colorbars: [colorbar.exportPart()],
      notes: [summary.textContent, toggle.checked ? 'row-normalised' : 'counts'],
    }),
  };
}

// Precision/recall as a percentage; "–" when undefined (no examples).
function formatRatio(v) {
  return Number.isFinite(v) ? formatPercent(v * 100) : '– (no examples)';
}
