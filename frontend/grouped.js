/**
 * Grouped bars (one group per layer, one bar per run), pure: geometry and
 * hit-testing for the compare view. The axis is shared by every run, so a
 * layer's bars are read against the same ticks.
 */

import { barLayout } from './charts.js';

/**
 * @param {(number|null)[][]} matrix matrix[run][layer]; null = the run has no
 *   such layer (no bar, said so on hover)
 * @param {{x: number, y: number, width: number, height: number}} box plot area
 * @param {'linear'|'log'} [scale='linear']
 * @returns {{layers: number, runs: number, band: number, slot: number,
 *   domain: [number, number], ticks: number[], toY: function(number): number,
 *   baseline: number, bars: {run: number, layer: number, value: number|null,
 *   kind: 'bar'|'nonfinite'|'nonpositive'|'missing', x: number, width: number,
 *   top: number, bottom: number}[]}}
 */
export function groupedBarLayout(matrix, box, scale = 'linear') {
  const runs = matrix.length;
  const layers = Math.max(0, ...matrix.map((row) => row.length));
  // The shared axis comes from all numbers together (barLayout's rules).
  const all = [];
  for (const row of matrix) for (const v of row) if (typeof v === 'number') all.push(v);
  const axis = barLayout(all, box, scale);
  const band = layers ? box.width / layers : 0;
  const pad = Math.min(band * 0.15, 6);
  const slot = runs ? (band - 2 * pad) / runs : 0;
  const bars = [];
  for (let l = 0; l < layers; l++) {
    for (let r = 0; r < runs; r++) {
      const value = matrix[r][l];
      const x = box.x + l * band + pad + r * slot;
      const width = Math.max(1, slot - (slot > 4 ? 1 : 0));
      let kind = 'bar';
      let top = axis.baseline;
      let bottom = axis.baseline;
      if (typeof value !== 'number') kind = 'missing';
      else if (!Number.isFinite(value)) {
        kind = 'nonfinite';
        top = box.y;
        bottom = box.y + box.height;
      } else if (scale === 'log' && value <= 0) kind = 'nonpositive';
      else {
        const y = axis.toY(value);
        top = Math.min(y, axis.baseline);
        bottom = Math.max(y, axis.baseline);
      }
      bars.push({ run: r, layer: l, value: typeof value === 'number' ? value : null, kind, x, width, top, bottom });
    }
  }
  return {
    layers, runs, band, slot, bars,
    domain: axis.domain, ticks: axis.ticks, toY: axis.toY, baseline: axis.baseline,
  };
}

/**
 * The layer group under x and, inside it, the run slot (or -1 in the group's
 * padding).
 * @param {ReturnType<typeof groupedBarLayout>} layout
 * @param {{x: number, width: number}} box
 * @param {number} x
 * @returns {{layer: number, run: number}|null}
 */
export function groupedBarHit(layout, box, x) {
  if (!layout.layers || x < box.x || x >= box.x + box.width) return null;
  const layer = Math.min(layout.layers - 1, Math.floor((x - box.x) / layout.band));
  const pad = Math.min(layout.band * 0.15, 6);
  const inner = x - (box.x + layer * layout.band + pad);
  const run = inner >= 0 && layout.slot > 0 ? Math.floor(inner / layout.slot) : -1;
  return { layer, run: run >= 0 && run < layout.runs ? run : -1 };
}
