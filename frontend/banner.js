/**
 * The page's error banner: when a request fails, the server's message is
 * shown at the top of the tab (cards also show their own error in place).
 *
 * Anything can report with `reportError(where, err)`; the banner of the
 * page shows the latest failure and how many others came before it.
 * DOM hooks: `.error-banner`, `.error-banner-text`, `.error-dismiss`.
 */

import { el } from './dom.js';

const subscribers = new Set();

/**
 * Reports a failed request. Aborted requests (the user moved on) are not
 * failures and are ignored.
 * @param {string} where what failed, e.g. "healthy · weights/fc1"
 * @param {Error|string} err its message is the server's text (model.js)
 */
export function reportError(where, err) {
  if (err && err.name === 'AbortError') return;
  const message = (err && err.message) || String(err);
  for (const fn of subscribers) fn(where, message);
}

/**
 * @returns {{element: HTMLElement, clear: function(): void, dispose: function(): void}}
 */
export function createBanner() {
  const text = el('span', { class: 'error-banner-text' });
  const more = el('span', { class: 'error-banner-more' });
  const dismiss = el('button', {
    type: 'button', class: 'error-dismiss', text: 'Dismiss', 'aria-label': 'dismiss the error message',
  });
  const element = el('div', { class: 'error-banner', role: 'alert', hidden: true }, [
    el('strong', { class: 'error-banner-title', text: 'Request failed' }),
    text, more, dismiss,
  ]);
  let count = 0;
  const clear = () => {
    count = 0;
    element.hidden = true;
    text.textContent = '';
    more.textContent = '';
  };
  dismiss.addEventListener('click', clear);
  const onError = (where, message) => {
    count += 1;
    text.textContent = where ? `${where}: ${message}` : message;
    more.textContent = count > 1 ? `(${count - 1} earlier failure${count > 2 ? 's' : ''})` : '';
    element.hidden = false;
  };
  subscribers.add(onError);
  return {
    element,
    clear,
    dispose: () => subscribers.delete(onError),
  };
}
