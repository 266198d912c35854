/**
 * The card's note when TensorBoard sampled a tag's steps, pure
 * (tests/js/sampling.test.mjs).
 *
 * TensorBoard keeps at most `sample_limit` steps per run and tag (the
 * plugin's default, or the user's --samples_per_plugin); past it, it keeps a
 * random sample, so the slider misses steps. /data and /series say so with
 * `sampled: true`; the note says how many steps were kept and what flag
 * keeps every one of them.
 */

/**
 * Estimates how many steps were logged from the kept ones: their span over
 * the logging interval. Steps logged every k are all k apart times some
 * whole number, so the greatest common divisor of the gaps between kept
 * steps is k as soon as two gaps are coprime multiples of it (a random
 * sample keeps such gaps); irregular logging makes it smaller, the
 * estimate larger: an upper bound.
 * @param {number[]} steps kept steps, increasing
 * @returns {number} 0 when fewer than two steps are known
 */
export function estimateLogged(steps) {
  if (!Array.isArray(steps) || steps.length < 2) return 0;
  let interval = 0;
  for (let i = 1; i < steps.length; i++) interval = gcd(interval, steps[i] - steps[i - 1]);
  if (!(interval > 0)) return steps.length;
  return Math.max(steps.length, Math.floor((steps[steps.length - 1] - steps[0]) / interval) + 1);
}

function gcd(a, b) {
  let x = Math.abs(Math.round(a));
  let y = Math.abs(Math.round(b));
  while (y) [x, y] = [y, x % y];
  return x;
}

/**
 * A round value of --samples_per_plugin that keeps `needed` steps and room
 * to grow: the next of 1, 2, 5 x 10^k at or above twice `needed`.
 * @param {number} needed
 * @returns {number}
 */
export function suggestedSamples(needed) {
  const want = Math.max(1, 2 * needed);
  let unit = 10 ** Math.floor(Math.log10(want));
  for (;;) {
    for (const m of [1, 2, 5]) if (m * unit >= want) return m * unit;
    unit *= 10;
  }
}

/**
 * The note for a /data or /series response; "" when nothing was sampled.
 * @param {{sampled?: boolean, sample_limit?: number, steps?: number[]}} response
 * @returns {string}
 */
export function samplingNote(response) {
  if (!response || response.sampled !== true) return '';
  const kept = Array.isArray(response.steps) ? response.steps.length : 0;
  const limit = Number.isFinite(response.sample_limit) ? response.sample_limit : kept;
  const logged = estimateLogged(response.steps);
  const of = logged > limit ? ` of about ${logged} logged` : '';
  return `TensorBoard kept a sample of ${limit} steps${of}; start it with `
    + `--samples_per_plugin torch_visualization=${suggestedSamples(Math.max(logged, limit))} to keep every step.`;
}
