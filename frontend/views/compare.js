/**
 * Compare views by chart kind: each takes the datasets of several runs
 * (`[{run, color, step, data}]`, data null when the run has nothing at that
 * step) and draws them together. See the modules for each picture.
 */

import { createCompareBarsView } from './compare_bars.js';
import { createCompareHeatmapsView } from './compare_heatmaps.js';
import { createComparePiesView } from './compare_pies.js';

export const COMPARE_VIEWS = Object.freeze({
  bars: createCompareBarsView,
  pie: createComparePiesView,
  heatmap: createCompareHeatmapsView,
});
