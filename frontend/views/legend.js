/**
 * Legends shared by the panels: a colour bar (gradient with its end values
 * and keys for the special colours) and a swatch list (one entry per run or
 * class). Each also describes itself for the PNG export.
 */

import { NONFINITE_COLOR } from '../charts.js';
import { el } from '../dom.js';

/** Swatch colours of the special cells, as the matrix views draw them. */
export const SPECIAL_SWATCHES = Object.freeze({
  nonfinite: { color: NONFINITE_COLOR, label: 'NaN / Inf' },
  nonfiniteDark: { color: '#000000', label: 'NaN / Inf (black, red frame)' },
  nonpositive: { color: 'rgb(214, 214, 214)', label: '≤ 0 (not on a log scale)' },
  missing: { color: '#ffffff', label: 'not logged' },
});

/**
 * A horizontal colour bar: "min [gradient] max", a title, special keys.
 * @returns {{element: HTMLElement, set: function(Object): void, exportPart: function(): Object}}
 */
export function createColorbar() {
  const title = el('span', { class: 'colorbar-title' });
  const min = el('span', { class: 'legend-end colorbar-min' });
  const max = el('span', { class: 'legend-end colorbar-max' });
  const bar = el('div', { class: 'legend-bar' });
  const keys = el('span', { class: 'colorbar-keys' });
  const element = el('div', { class: 'colorbar' }, [
    el('div', { class: 'heat-legend' }, [min, bar, max]),
    el('div', { class: 'colorbar-caption' }, [title, keys]),
  ]);
  let current = null;
  return {
    element,
    /**
     * @param {{colors: string[], min: string, max: string, title?: string,
     *   special?: string[]}} spec colors: evenly spaced CSS colours
     */
    set(spec) {
      current = spec;
      const n = spec.colors.length;
      bar.style.background = `linear-gradient(to right, ${spec.colors.map(
        (c, i) => `${c} ${Math.round((i / Math.max(1, n - 1)) * 100)}%`,
      ).join(', ')})`;
      min.textContent = spec.min;
      max.textContent = spec.max;
      title.textContent = spec.title || '';
      keys.replaceChildren(...(spec.special || []).map((name) => {
        const s = SPECIAL_SWATCHES[name];
        return el('span', { class: `colorbar-key key-${name}` }, [
          el('span', { class: 'swatch', style: { background: s.color } }), s.label,
        ]);
      }));
    },
    exportPart() {
      if (!current) return null;
      return {
        colors: current.colors,
        min: current.min,
        max: current.max,
        title: current.title || '',
        special: (current.special || []).map((name) => SPECIAL_SWATCHES[name]),
      };
    },
  };
}

/**
 * A list of colour swatches with names (runs, classes, series).
 * @param {string} className extra class of the list
 * @returns {{element: HTMLElement, set: function(Object[]): void,
 *   items: function(): HTMLElement[], exportPart: function(): Object[]}}
 */
export function createSwatchLegend(className) {
  const element = el('ul', { class: `legend ${className || ''}` });
  let entries = [];
  let nodes = [];
  return {
    element,
    /**
     * @param {{color: string, label: string, value?: string, flagged?: boolean,
     *   title?: string, round?: boolean}[]} items
     */
    set(items) {
      entries = items;
      nodes = items.map((item) => el('li', {
        class: `legend-item${item.flagged ? ' is-nonfinite' : ''}`,
        title: item.title || item.label,
      }, [
        el('span', {
          class: `swatch${item.round ? ' swatch-round' : ''}`,
          style: { background: item.color },
        }),
        el('span', { class: 'legend-name', text: item.label }),
        item.value !== undefined ? el('span', { class: 'legend-value', text: item.value }) : null,
      ]));
      element.replaceChildren(...nodes);
    },
    items: () => nodes,
    exportPart: () => entries.map((e) => ({
      color: e.color, label: e.value !== undefined ? `${e.label} ${e.value}` : e.label, flagged: !!e.flagged,
    })),
  };
}
