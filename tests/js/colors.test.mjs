// Unit tests of the colour scales (frontend/colors.js). Run: node --test tests/js/
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  colorStops, MISSING_RGB, NONFINITE_RGB, NONPOSITIVE_RGB, RUN_PALETTE, runColor,
  sequentialColor, sequentialScale, textColorOn, viridisColor,
} from '../../frontend/colors.js';

const luminance = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;

test('viridisColor runs from dark purple to yellow, getting lighter all the way', () => {
  assert.deepEqual(viridisColor(0), [68, 1, 84]);
  assert.deepEqual(viridisColor(1), [253, 231, 37]);
  let last = -1;
  for (let i = 0; i <= 20; i++) {
    const l = luminance(viridisColor(i / 20));
    assert.ok(l > last, `luminance not increasing at ${i / 20}`);
    last = l;
  }
  // Clamped, and NaN gives the low end instead of garbage.
  assert.deepEqual(viridisColor(-3), viridisColor(0));
  assert.deepEqual(viridisColor(7), viridisColor(1));
  assert.deepEqual(viridisColor(NaN), viridisColor(0));
});

test('sequentialScale (linear) spans the finite values and classifies the rest', () => {
  const s = sequentialScale([[1, 3], [NaN, 5], [null, Infinity]]);
  assert.deepEqual(s.domain, [1, 5]);
  assert.equal(s.t(1), 0);
  assert.equal(s.t(3), 0.5);
  assert.equal(s.t(5), 1);
  assert.equal(s.classify(NaN), 'nonfinite');
  assert.equal(s.classify(-Infinity), 'nonfinite');
  assert.equal(s.classify(null), 'missing');
  assert.equal(s.classify(-2), 'value');
  assert.equal(s.t(-2), 0); // clamped
});

test('sequentialScale with zero starts counts at 0', () => {
  assert.deepEqual(sequentialScale([3, 7], { zero: true }).domain, [0, 7]);
});

test('sequentialScale (log) uses the positive values; <= 0 is nonpositive', () => {
  const s = sequentialScale([1e-6, 1e-3, 1, 0, -1], { log: true });
  assert.deepEqual(s.domain, [1e-6, 1]);
  assert.ok(Math.abs(s.t(1e-3) - 0.5) < 1e-12);
  assert.equal(s.classify(0), 'nonpositive');
  assert.equal(s.classify(-1), 'nonpositive');
  assert.equal(s.classify(1e-9), 'value');
  assert.equal(s.t(1e-9), 0);
});

test('sequentialScale: constant or empty input does not divide by zero', () => {
  const c = sequentialScale([2, 2]);
  assert.equal(c.t(2), 0.5);
  const e = sequentialScale([NaN]);
  assert.ok(e.empty);
  const l = sequentialScale([0, -1], { log: true });
  assert.ok(l.empty);
  assert.ok(Number.isFinite(l.t(5)));
});

test('sequentialColor: special colours for non-finite, non-positive and missing', () => {
  const s = sequentialScale([0.1, 10], { log: true });
  assert.deepEqual(sequentialColor(s, NaN), [...NONFINITE_RGB]);
  assert.deepEqual(sequentialColor(s, 0), [...NONPOSITIVE_RGB]);
  assert.deepEqual(sequentialColor(s, null), [...MISSING_RGB]);
  assert.deepEqual(sequentialColor(s, 10), viridisColor(1));
  // The non-finite red is not a viridis colour (viridis has no red).
  assert.ok(NONFINITE_RGB[0] > 200 && NONFINITE_RGB[1] < 80);
});

test('colorStops samples n colours from 0 to 1', () => {
  assert.deepEqual(colorStops(viridisColor, 3), ['rgb(68, 1, 84)', 'rgb(38, 130, 142)', 'rgb(253, 231, 37)']);
  assert.equal(colorStops(viridisColor, 1).length, 1);
});

test('runColor cycles the colour-blind-safe palette', () => {
  assert.equal(runColor(0), RUN_PALETTE[0]);
  assert.equal(runColor(RUN_PALETTE.length + 1), RUN_PALETTE[1]);
  assert.equal(runColor(-1), RUN_PALETTE[0]);
  assert.equal(new Set(RUN_PALETTE).size, RUN_PALETTE.length);
});

test('textColorOn picks the more readable of black and white', () => {
  assert.equal(textColorOn([68, 1, 84]), '#ffffff');
  assert.equal(textColorOn([253, 231, 37]), '#000000');
  assert.equal(textColorOn([255, 255, 255]), '#000000');
});
