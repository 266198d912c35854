/**
 * Small DOM helpers shared by the page, the cards and the views.
 *
 * Every piece of text goes through textContent: run, tag, class and layer
 * names come from users and must never be parsed as HTML.
 */

import { truncateMiddle } from './charts.js';

/**
 * Creates an element.
 * @param {string} tag
 * @param {Object} [props] `class`, `text`, `dataset`, `style`, `on<Event>`
 *   handlers, any other key is set as an attribute.
 * @param {Array<Node|string|null>} [children] strings become text nodes
 * @returns {HTMLElement}
 */
export function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'style') Object.assign(node.style, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

let scaleOverride = 0;

/**
 * Runs `fn` with canvases sized for `scale` device pixels per CSS pixel
 * instead of the screen's (the PNG export redraws at 2x for sharp images).
 * @param {number} scale
 * @param {Function} fn
 * @returns {*} what fn returns
 */
export function withCanvasScale(scale, fn) {
  const previous = scaleOverride;
  scaleOverride = scale;
  try {
    return fn();
  } finally {
    scaleOverride = previous;
  }
}

/**
 * Sizes a canvas for the screen it is on and returns a context in CSS pixels:
 * the backing store is cssWidth*dpr x cssHeight*dpr and the context is scaled
 * by dpr, so lines and text stay sharp on high-DPI screens.
 * @param {HTMLCanvasElement} canvas styled with a CSS width (e.g. 100%)
 * @param {number} cssHeight
 * @returns {{ctx: CanvasRenderingContext2D, width: number, height: number, dpr: number}}
 */
export function setupCanvas(canvas, cssHeight) {
  const dpr = scaleOverride || window.devicePixelRatio || 1;
  // clientWidth is 0 while detached or hidden; fall back to the card width.
  const width = canvas.clientWidth || 360;
  canvas.style.height = `${cssHeight}px`;
  canvas.width = Math.max(1, Math.round(width * dpr));
  canvas.height = Math.max(1, Math.round(cssHeight * dpr));
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, cssHeight);
  return { ctx, width, height: cssHeight, dpr };
}

/**
 * Middle-truncates `text` until it is at most `maxWidth` px wide on `ctx`.
 * @param {CanvasRenderingContext2D} ctx with its font set
 * @param {string} text
 * @param {number} maxWidth
 * @returns {string}
 */
export function fitText(ctx, text, maxWidth) {
  if (ctx.measureText(text).width <= maxWidth) return text;
  let n = text.length - 1;
  let t = truncateMiddle(text, n);
  while (n > 3 && ctx.measureText(t).width > maxWidth) {
    n -= 1;
    t = truncateMiddle(text, n);
  }
  return t;
}

/** Font shorthand used on every canvas (matches the page's font). */
export const CANVAS_FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';

/**
 * A per-card tooltip. The element (class `tooltip`) exists in the DOM only
 * while it is shown, so "the tooltip" on the page is always the one being
 * looked at.
 * @param {HTMLElement} host positioned element (the card) it is placed in
 * @returns {{show: function(MouseEvent, Array<string|[string, string]>): void,
 *   hide: function(): void, element: HTMLElement}}
 */
export function createTooltip(host) {
  const element = el('div', { class: 'tooltip', role: 'tooltip' });
  return {
    element,
    show(event, lines) {
      element.replaceChildren(
        ...lines.map((line) => {
          if (typeof line === 'string') return el('div', { class: 'tooltip-title', text: line });
          const [label, value, cls] = line;
          return el('div', { class: `tooltip-row${cls ? ` ${cls}` : ''}` }, [
            el('span', { class: 'tooltip-label', text: label }),
            el('span', { class: 'tooltip-value', text: value }),
          ]);
        }),
      );
      if (!element.isConnected) host.append(element);
      const box = host.getBoundingClientRect();
      const x = event.clientX - box.left;
      const y = event.clientY - box.top;
      // Prefer right/below the cursor; flip when it would leave the card.
      const w = element.offsetWidth;
      const h = element.offsetHeight;
      const left = x + 14 + w > box.width ? Math.max(0, x - 14 - w) : x + 14;
      const top = y + 14 + h > box.height ? Math.max(0, y - 14 - h) : y + 14;
      element.style.left = `${left}px`;
      element.style.top = `${top}px`;
    },
    hide() {
      element.remove();
    },
  };
}

/**
 * The hover life cycle of a chart canvas. On a mouse move `hitAt(event)`
 * names the item under the mouse (`none` for nothing, undefined while
 * nothing is drawn); a change of item redraws (the view highlights
 * `current`), and the tooltip shows `lines(item)` or hides. Leaving the
 * canvas clears the highlight and hides the tooltip.
 * @param {HTMLCanvasElement} canvas
 * @param {{show: Function, hide: Function}} tooltip
 * @param {{hitAt: function(MouseEvent): *, lines: function(*): Array,
 *   redraw: function(): void, none?: *, same?: function(*, *): boolean}} spec
 *   none: the "no item" value (-1); same: whether two items highlight the
 *   same thing (===)
 * @returns {{current: *, set: function(*): void, clear: function(): void}}
 *   set: highlight an item (a legend may point at one too), redraws on a
 *   change; clear: forget the highlight without redrawing
 */
export function trackHover(canvas, tooltip, { hitAt, lines, redraw, none = -1, same = (a, b) => a === b }) {
  let current = none;
  const hover = {
    get current() {
      return current;
    },
    set(item) {
      if (same(item, current)) return;
      current = item;
      redraw();
    },
    clear() {
      current = none;
    },
  };
  canvas.addEventListener('mousemove', (event) => {
    const item = hitAt(event);
    if (item === undefined) return;
    hover.set(item);
    if (item === none) tooltip.hide();
    else tooltip.show(event, lines(item));
  });
  canvas.addEventListener('mouseleave', () => {
    current = none;
    tooltip.hide();
    redraw();
  });
  return hover;
}

/**
 * Calls `fn` once `ms` after the last call; `.flush()` runs a pending call
 * now and `.cancel()` drops it.
 * @param {Function} fn
 * @param {number} ms
 * @returns {Function}
 */
export function debounce(fn, ms) {
  let timer = null;
  let args = null;
  const run = () => {
    timer = null;
    const a = args;
    args = null;
    fn(...a);
  };
  const wrapped = (...a) => {
    args = a;
    clearTimeout(timer);
    timer = setTimeout(run, ms);
  };
  wrapped.flush = () => {
    if (timer !== null) {
      clearTimeout(timer);
      run();
    }
  };
  wrapped.cancel = () => {
    clearTimeout(timer);
    timer = null;
    args = null;
  };
  return wrapped;
}
