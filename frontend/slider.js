/**
 * The step slider of a card: a range input over the logged steps (snapping
 * to them), the step number, "i / n", and a debounced pick.
 *
 * DOM hooks: `.step-slider` (the input), `.step-value` (the step shown),
 * `.step-count`, `.step-note` (extra text, e.g. each run's step).
 */

import { nearestStep, stepGranularity } from './charts.js';
import { debounce, el } from './dom.js';

// Wait this long after the slider stops before asking for a step, so that
// dragging across 100 steps does not send 100 requests.
const PICK_DEBOUNCE_MS = 120;

export class StepSlider {
  /**
   * @param {string} ariaLabel
   * @param {{onMove: function(number): void, onPick: function(number): void}} handlers
   *   onMove: at once on every user move (invalidate what is in flight);
   *   onPick: once the user stops moving.
   */
  constructor(ariaLabel, { onMove, onPick }) {
    this.steps = [];
    this.onMove = onMove;
    this.input = el('input', {
      type: 'range', class: 'step-slider', min: '0', max: '0', step: '1', value: '0',
      'aria-label': ariaLabel,
      disabled: true, // until the first response says which steps exist
    });
    this.stepValue = el('span', { class: 'step-value', text: '–' });
    this.stepCount = el('span', { class: 'step-count' });
    this.note = el('div', { class: 'step-note', hidden: true });
    this.element = el('footer', { class: 'card-footer' }, [
      el('div', { class: 'step-row' }, [
        el('label', { class: 'step-label' }, ['step ', this.stepValue]),
        this.input,
        this.stepCount,
      ]),
      this.note,
    ]);
    this.pick = debounce(onPick, PICK_DEBOUNCE_MS);
    this.input.addEventListener('input', () => this.userMove(Number(this.input.value)));
    this.input.addEventListener('change', () => this.pick.flush());
    this.input.addEventListener('keydown', (e) => this.onKey(e));
  }

  /** The step the slider is on. */
  get value() {
    return Number(this.input.value);
  }

  /** Points the slider at the logged `steps` with `current` selected. */
  setSteps(steps, current) {
    this.steps = Array.isArray(steps) && steps.length ? steps : [current];
    const s = this.steps;
    // Slider values are step numbers; the granularity makes every logged
    // step reachable and input events snap to the nearest one.
    this.input.disabled = false;
    this.input.min = String(s[0]);
    this.input.max = String(s[s.length - 1]);
    this.input.step = String(stepGranularity(s));
    this.show(current);
  }

  /** Moves the slider to the logged step nearest `value`; no callbacks. */
  show(value) {
    const step = nearestStep(this.steps, value);
    if (step === undefined) return undefined;
    this.input.value = String(step);
    this.stepValue.textContent = String(step);
    const i = this.steps.indexOf(step);
    this.stepCount.textContent = this.steps.length > 1 ? `${i + 1} / ${this.steps.length}` : '1 step';
    return step;
  }

  /** Whether the slider sits on the last logged step. */
  atLatest() {
    return !this.steps.length || this.value === this.steps[this.steps.length - 1];
  }

  setNote(text) {
    this.note.textContent = text || '';
    this.note.hidden = !text;
  }

  userMove(raw) {
    const step = this.show(raw);
    if (step === undefined) return;
    this.onMove(step);
    this.pick(step);
  }

  onKey(e) {
    const back = e.key === 'ArrowLeft' || e.key === 'ArrowDown';
    const forward = e.key === 'ArrowRight' || e.key === 'ArrowUp';
    if (!back && !forward) return;
    // Native arrows move by the slider granularity, which may not be a logged
    // step: move to the previous/next logged step instead.
    e.preventDefault();
    const i = this.steps.indexOf(this.value);
    const j = Math.max(0, Math.min(this.steps.length - 1, i + (forward ? 1 : -1)));
    if (j !== i) this.userMove(this.steps[j]);
  }

  cancel() {
    this.pick.cancel();
  }
}
