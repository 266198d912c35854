// Unit tests of the pure chart maths (frontend/charts.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  BAR_LABEL_ROOM, barHit, barLayout, CLASS_PALETTE, classColor, countNonFinite, describeShape,
  divergingColor, finiteExtent, formatPercent, formatValue, heatmapHit, heatmapLayout, labelFor,
  labelStride, linearTicks, logTicks, nearestPoint, niceDomain, nearestStep, NO_CLASS_COLOR, pieHit,
  pieSlices, rgbString, scatterLayout, slantedLabelRoom, stepGranularity, symmetricMax, truncateMiddle,
} from '../../frontend/charts.js';

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

// ------------------------------------------------------------- numbers --

test('countNonFinite counts NaN and both infinities at any depth', () => {
  assert.equal(countNonFinite([1, NaN, [Infinity, [-Infinity, 0]], 2]), 3);
  assert.equal(countNonFinite([[0, 1], [2, 3]]), 0);
  assert.equal(countNonFinite(NaN), 1);
  assert.equal(countNonFinite([]), 0);
});

test('finiteExtent ignores non-finite values', () => {
  assert.deepEqual(finiteExtent([[3, NaN], [-2, Infinity], [7, -Infinity]]), { min: -2, max: 7, count: 3 });
  const none = finiteExtent([NaN, Infinity]);
  assert.equal(none.count, 0);
  assert.ok(Number.isNaN(none.min) && Number.isNaN(none.max));
});

test('formatValue is short and explicit about non-finite values', () => {
  assert.equal(formatValue(NaN), 'NaN');
  assert.equal(formatValue(Infinity), 'Inf');
  assert.equal(formatValue(-Infinity), '-Inf');
  assert.equal(formatValue(0), '0');
  assert.equal(formatValue(42), '42');
  assert.equal(formatValue(0.5), '0.5');
  assert.equal(formatValue(3.14159), '3.142');
  assert.equal(formatValue(-12.5), '-12.5');
  assert.equal(formatValue(1.5e-5), '1.5e-5');
  assert.equal(formatValue(-2.346e-7), '-2.35e-7');
  assert.equal(formatValue(123456), '1.23e5');
});

test('formatPercent rounds to one decimal and marks tiny shares', () => {
  assert.equal(formatPercent(12.345), '12.3%');
  assert.equal(formatPercent(0), '0.0%');
  assert.equal(formatPercent(0.01), '<0.1%');
  assert.equal(formatPercent(100), '100.0%');
  assert.equal(formatPercent(NaN), '–');
});

test('truncateMiddle keeps both ends of long names', () => {
  assert.equal(truncateMiddle('short', 10), 'short');
  const t = truncateMiddle('encoder.layers.3.attention.out_proj.weight', 15);
  assert.equal(t.length, 15);
  assert.equal(t, 'encoder….weight');
  assert.ok(t.startsWith('encoder') && t.endsWith('weight'));
});

// ------------------------------------------------------------- colours --

test('divergingColor is white at 0, blue below, red above, symmetric', () => {
  assert.deepEqual(divergingColor(0, 5), [247, 247, 247]);
  assert.deepEqual(divergingColor(-5, 5), [33, 102, 172]);
  assert.deepEqual(divergingColor(5, 5), [178, 24, 43]);
  // Beyond the range clamps to the ends.
  assert.deepEqual(divergingColor(50, 5), [178, 24, 43]);
  assert.deepEqual(divergingColor(-50, 5), [33, 102, 172]);
  // Half way: the middle stops exactly.
  assert.deepEqual(divergingColor(-2.5, 5), [146, 197, 222]);
  assert.deepEqual(divergingColor(2.5, 5), [244, 165, 130]);
  // A quarter: halfway between white and the half stop.
  assert.deepEqual(divergingColor(1.25, 5), [246, 206, 189]);
  const neg = divergingColor(-1, 4);
  const pos = divergingColor(1, 4);
  assert.ok(neg[2] > neg[0], 'negative values are bluish');
  assert.ok(pos[0] > pos[2], 'positive values are reddish');
});

test('divergingColor handles a zero range and non-finite values', () => {
  assert.deepEqual(divergingColor(0, 0), [247, 247, 247]);
  assert.deepEqual(divergingColor(3, 0), [247, 247, 247]);
  assert.deepEqual(divergingColor(NaN, 1), [0, 0, 0]);
  assert.deepEqual(divergingColor(Infinity, 1), [0, 0, 0]);
});

test('symmetricMax is max |finite value|', () => {
  assert.equal(symmetricMax([[1, -3], [2, NaN]]), 3);
  assert.equal(symmetricMax([0.5, Infinity, -0.25]), 0.5);
  assert.equal(symmetricMax([NaN]), 0);
  assert.equal(rgbString([1, 2, 3]), 'rgb(1, 2, 3)');
});

test('classColor cycles a fixed palette and greys out -1', () => {
  assert.equal(CLASS_PALETTE.length, 10);
  assert.equal(new Set(CLASS_PALETTE).size, 10);
  assert.equal(classColor(0), '#332288');
  assert.equal(classColor(9), '#555555');
  assert.equal(classColor(10), classColor(0));
  assert.equal(classColor(-1), NO_CLASS_COLOR);
  assert.equal(classColor(1.5), NO_CLASS_COLOR);
  assert.equal(classColor(NaN), NO_CLASS_COLOR);
});

test('labelFor uses labels and falls back to "class i"', () => {
  assert.equal(labelFor(['cat', 'dog'], 1), 'dog');
  assert.equal(labelFor(['cat'], 3), 'class 3');
  assert.equal(labelFor([], 0, 'layer'), 'layer 0');
  assert.equal(labelFor(['cat'], -1), 'no class');
  assert.equal(labelFor(['<img src=x>'], 0), '<img src=x>');
});

// ------------------------------------------------------------- heatmap --

test('heatmapLayout fits square-ish cells and centres the grid', () => {
  const l = heatmapLayout(10, 20, { x: 0, y: 0, width: 200, height: 100 });
  assert.equal(l.cellW, 10);
  assert.equal(l.cellH, 10);
  assert.deepEqual([l.x, l.y, l.width, l.height], [0, 0, 200, 100]);
  // A single row is not stretched beyond 4:1 and sits in the middle.
  const row = heatmapLayout(1, 64, { x: 10, y: 0, width: 320, height: 200 });
  assert.equal(row.cellW, 5);
  assert.equal(row.cellH, 20);
  assert.equal(row.y, 90);
  assert.equal(row.x, 10);
  // A tall grid is limited the other way and centred horizontally.
  const col = heatmapLayout(100, 1, { x: 0, y: 0, width: 300, height: 200 });
  assert.equal(col.cellH, 2);
  assert.equal(col.cellW, 8);
  assert.equal(col.x, 146);
});

test('heatmapHit maps pixels to row/col and rejects outside points', () => {
  const l = heatmapLayout(4, 8, { x: 20, y: 10, width: 80, height: 40 });
  assert.deepEqual(heatmapHit(l, 20, 10), { row: 0, col: 0 });
  assert.deepEqual(heatmapHit(l, 35, 25), { row: 1, col: 1 });
  assert.deepEqual(heatmapHit(l, 99.9, 49.9), { row: 3, col: 7 });
  assert.equal(heatmapHit(l, 19, 20), null);
  assert.equal(heatmapHit(l, 100, 20), null);
  assert.equal(heatmapHit(l, 50, 50), null);
  assert.equal(heatmapHit(heatmapLayout(0, 0, { x: 0, y: 0, width: 10, height: 10 }), 1, 1), null);
});

test('describeShape reports the original shape and the reduction', () => {
  assert.equal(describeShape([128, 64], [64, 64], 'mean_pool'), 'shape 128×64, mean-pooled to 64×64');
  assert.equal(describeShape([10, 20], [10, 20], 'none'), 'shape 10×20');
  assert.equal(describeShape([16, 3, 3, 3], [16, 27], 'none'), 'shape 16×3×3×3, shown as 16×27');
  assert.equal(describeShape([], [4, 4], ''), 'shape 4×4');
});

// ----------------------------------------------------------------- pie --

test('pieSlices: angles from 12 o\'clock, clockwise, percentages', () => {
  const p = pieSlices([1, 3]);
  assert.equal(p.total, 4);
  assert.equal(p.slices.length, 2);
  close(p.slices[0].start, -Math.PI / 2);
  close(p.slices[0].end, 0);
  close(p.slices[1].start, 0);
  close(p.slices[1].end, 1.5 * Math.PI);
  assert.deepEqual(p.percents, [25, 75]);
  assert.equal(p.slices[1].percent, 75);
  assert.deepEqual(p.invalid, []);
});

test('pieSlices: zero values get no slice but 0%; all-zero is flagged', () => {
  const p = pieSlices([0, 2, 0, 2]);
  assert.deepEqual(p.slices.map((s) => s.index), [1, 3]);
  assert.deepEqual(p.percents, [0, 50, 0, 50]);
  const z = pieSlices([0, 0, 0]);
  assert.equal(z.allZero, true);
  assert.deepEqual(z.slices, []);
  assert.deepEqual(z.percents, [0, 0, 0]);
});

test('pieSlices: non-finite and negative values are listed, not sliced', () => {
  const p = pieSlices([1, NaN, 1, Infinity, -1]);
  assert.equal(p.total, 2);
  assert.deepEqual(p.slices.map((s) => s.index), [0, 2]);
  assert.deepEqual(p.invalid, [1, 3, 4]);
  assert.equal(p.percents[0], 50);
  assert.ok(Number.isNaN(p.percents[1]));
  assert.ok(Number.isNaN(p.percents[3]));
  // The finite slices still close the circle.
  close(p.slices[1].end - p.slices[0].start, 2 * Math.PI);
  const onlyBad = pieSlices([NaN, NaN]);
  assert.equal(onlyBad.allZero, true);
  assert.deepEqual(onlyBad.invalid, [0, 1]);
});

test('pieHit finds the slice under the cursor', () => {
  const { slices } = pieSlices([1, 1, 2]); // quarter, quarter, half
  // Centre (100, 100), radius 50. Top-right quadrant is slice 0.
  assert.equal(pieHit(slices, 100, 100, 50, 120, 80), 0);
  // Bottom-right quadrant: slice 1.
  assert.equal(pieHit(slices, 100, 100, 50, 120, 120), 1);
  // Left half: slice 2, both above and below the centre.
  assert.equal(pieHit(slices, 100, 100, 50, 80, 120), 2);
  assert.equal(pieHit(slices, 100, 100, 50, 80, 80), 2);
  // Outside the radius.
  assert.equal(pieHit(slices, 100, 100, 50, 160, 100), -1);
  assert.equal(pieHit([], 100, 100, 50, 100, 90), -1);
});

// ---------------------------------------------------------------- axes --

test('linearTicks picks round steps', () => {
  assert.deepEqual(linearTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(linearTicks(0, 10, 4), [0, 5, 10]);
  assert.deepEqual(linearTicks(-3, 7, 5), [-2, 0, 2, 4, 6]);
  assert.deepEqual(linearTicks(0.1, 0.35, 5), [0.1, 0.15, 0.2, 0.25, 0.3, 0.35]);
  assert.deepEqual(linearTicks(2, 2), [2]);
  assert.deepEqual(linearTicks(NaN, 1), []);
});

test('niceDomain widens to whole tick steps', () => {
  assert.deepEqual(niceDomain(0, 347, 4), [0, 400]);
  assert.deepEqual(niceDomain(-2.5, 3, 4), [-4, 4]);
  assert.deepEqual(niceDomain(0, 4, 4), [0, 4]);
  assert.deepEqual(niceDomain(0.12, 0.87, 5), [0, 1]);
  assert.deepEqual(niceDomain(0.12, 0.87, 10), [0.1, 0.9]);
  assert.deepEqual(niceDomain(1, 1), [1, 1]);
});

test('logTicks lists powers of ten, thinned', () => {
  assert.deepEqual(logTicks(1e-3, 1), [1e-3, 1e-2, 1e-1, 1]);
  assert.deepEqual(logTicks(1e-12, 1), [1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1]);
});

// ---------------------------------------------------------------- bars --

const BOX = { x: 0, y: 0, width: 100, height: 100 };

test('barLayout linear: bars from zero, axis from the ticks', () => {
  const l = barLayout([1, 2, 4, 3], BOX, 'linear');
  assert.deepEqual(l.domain, [0, 4]);
  assert.equal(l.band, 25);
  assert.equal(l.baseline, 100);
  assert.deepEqual(l.bars.map((b) => b.kind), ['bar', 'bar', 'bar', 'bar']);
  assert.equal(l.bars[2].top, 0);
  assert.equal(l.bars[2].bottom, 100);
  assert.equal(l.bars[0].top, 75);
  // 4 px gap between bars, centred in the band.
  assert.equal(l.bars[1].x, 27);
  assert.equal(l.bars[1].width, 21);
});

test('barLayout linear: negative values hang below the zero line', () => {
  const l = barLayout([-2, 2], BOX, 'linear');
  assert.deepEqual(l.domain, [-2, 2]);
  assert.equal(l.baseline, 50);
  assert.equal(l.bars[0].top, 50);
  assert.equal(l.bars[0].bottom, 100);
  assert.equal(l.bars[1].top, 0);
  assert.equal(l.bars[1].bottom, 50);
});

test('barLayout marks non-finite values instead of dropping them', () => {
  const l = barLayout([1, NaN, Infinity, -Infinity], BOX, 'linear');
  assert.deepEqual(l.bars.map((b) => b.kind), ['bar', 'nonfinite', 'nonfinite', 'nonfinite']);
  assert.ok(Number.isNaN(l.bars[1].value));
  // The axis is set by the finite values only.
  assert.deepEqual(l.domain, [0, 1]);
  assert.equal(l.bars.length, 4);
});

test('barLayout log: decades around positive values, non-positive flagged', () => {
  const l = barLayout([0.001, 0.1, 0, -1, 10], BOX, 'log');
  // The axis starts one decade below 0.001 so that bar is visible.
  assert.deepEqual(l.domain, [0.0001, 10]);
  assert.deepEqual(l.bars.map((b) => b.kind), ['bar', 'bar', 'nonpositive', 'nonpositive', 'bar']);
  // 5 decades over 100 px: 20 px per decade from the bottom.
  close(l.toY(0.0001), 100);
  close(l.toY(10), 0);
  close(l.bars[0].top, 80);
  close(l.bars[0].bottom, 100);
  close(l.bars[1].top, 40);
  close(l.bars[4].top, 0);
  assert.equal(l.bars[2].top, l.baseline);
  assert.equal(l.baseline, 100);
  assert.deepEqual(l.ticks, [0.0001, 0.001, 0.01, 0.1, 1, 10]);
  const between = barLayout([0.3, 20], BOX, 'log');
  assert.deepEqual(between.domain, [0.1, 100]);
});

test('barLayout log with no positive value still has a valid axis', () => {
  const l = barLayout([0, -3, NaN], BOX, 'log');
  assert.deepEqual(l.domain, [1, 10]);
  assert.deepEqual(l.bars.map((b) => b.kind), ['nonpositive', 'nonpositive', 'nonfinite']);
  const single = barLayout([5, 5], BOX, 'log');
  assert.deepEqual(single.domain, [1, 10]);
});

test('barLayout with all zeros or nothing', () => {
  const l = barLayout([0, 0], BOX, 'linear');
  assert.deepEqual(l.domain, [0, 1]);
  assert.equal(l.bars[0].top, 100);
  assert.deepEqual(barLayout([], BOX).bars, []);
});

test('barHit finds the band under x', () => {
  assert.equal(barHit(BOX, 4, 0), 0);
  assert.equal(barHit(BOX, 4, 24.9), 0);
  assert.equal(barHit(BOX, 4, 25), 1);
  assert.equal(barHit(BOX, 4, 99.9), 3);
  assert.equal(barHit(BOX, 4, 100), -1);
  assert.equal(barHit(BOX, 4, -1), -1);
  assert.equal(barHit(BOX, 0, 10), -1);
});

test('labelStride thins labels on crowded axes', () => {
  assert.equal(labelStride(10, 30), 1);
  assert.equal(labelStride(100, 3), 5);
  assert.equal(labelStride(200, 1.5, 12), 8);
});

test('slantedLabelRoom fits the longest label at 45 degrees, within bounds', () => {
  // 40 px at 45 degrees drops 40 * sqrt(1/2) = 28.28 px, plus a 12 px gap.
  close(slantedLabelRoom([10, 40, 25]), 40 * Math.SQRT1_2 + 12);
  assert.equal(slantedLabelRoom([]), BAR_LABEL_ROOM.min);
  assert.equal(slantedLabelRoom([2]), BAR_LABEL_ROOM.min);
  assert.equal(slantedLabelRoom([1000]), BAR_LABEL_ROOM.max);
});

// ------------------------------------------------------------- scatter --

test('scatterLayout maps data into the padded box, y upwards', () => {
  const rows = [[0, 0, 0], [10, 5, 1], [5, 2.5, -1]];
  const l = scatterLayout(rows, { x: 0, y: 0, width: 120, height: 70 }, 10);
  assert.deepEqual(l.xDomain, [0, 10]);
  assert.deepEqual(l.yDomain, [0, 5]);
  assert.deepEqual([l.points[0].px, l.points[0].py], [10, 60]);
  assert.deepEqual([l.points[1].px, l.points[1].py], [110, 10]);
  assert.deepEqual([l.points[2].px, l.points[2].py], [60, 35]);
  assert.deepEqual(l.points.map((p) => p.cls), [0, 1, -1]);
  assert.deepEqual(l.nonfinite, []);
});

test('scatterLayout reports points with non-finite coordinates', () => {
  const rows = [[1, 1, 0], [NaN, 2, 1], [3, Infinity, 2], [2, 2, 0]];
  const l = scatterLayout(rows, { x: 0, y: 0, width: 100, height: 100 }, 0);
  assert.deepEqual(l.nonfinite, [1, 2]);
  assert.deepEqual(l.points.map((p) => p.index), [0, 3]);
  assert.deepEqual(l.xDomain, [1, 2]);
});

test('scatterLayout centres a degenerate cloud', () => {
  const l = scatterLayout([[3, 3, 0], [3, 3, 1]], { x: 0, y: 0, width: 100, height: 100 }, 0);
  assert.deepEqual(l.xDomain, [2.5, 3.5]);
  assert.deepEqual([l.points[0].px, l.points[0].py], [50, 50]);
});

test('nearestPoint returns the closest point within the radius', () => {
  const pts = [{ px: 0, py: 0 }, { px: 10, py: 0 }, { px: 10, py: 10 }];
  assert.equal(nearestPoint(pts, 1, 1, 8), 0);
  assert.equal(nearestPoint(pts, 9, 2, 8), 1);
  assert.equal(nearestPoint(pts, 10, 7, 8), 2);
  assert.equal(nearestPoint(pts, 50, 50, 8), -1);
  assert.equal(nearestPoint([], 0, 0), -1);
});

// --------------------------------------------------------------- steps --

test('nearestStep snaps to the closest logged step', () => {
  const steps = [0, 10, 20, 100];
  assert.equal(nearestStep(steps, 0), 0);
  assert.equal(nearestStep(steps, 4), 0);
  assert.equal(nearestStep(steps, 5), 0); // ties go to the earlier step
  assert.equal(nearestStep(steps, 6), 10);
  assert.equal(nearestStep(steps, 70), 100);
  assert.equal(nearestStep(steps, 1000), 100);
  assert.equal(nearestStep(steps, -5), 0);
  assert.equal(nearestStep([], 3), undefined);
});

test('stepGranularity makes every logged step a slider value', () => {
  assert.equal(stepGranularity([0, 10, 20, 40]), 10);
  assert.equal(stepGranularity([5, 105, 205]), 100);
  assert.equal(stepGranularity([0, 3, 7]), 1);
  assert.equal(stepGranularity([42]), 1);
});
