/**
 * Cards grouped by module path, and the tag filter that understands that
 * hierarchy; pure (tests/js/grouping.test.mjs).
 *
 * A tag's module path is its last "/"-separated part when that part holds a
 * dot: `weights/blocks.3.attn.q_proj.weight` -> `blocks.3.attn.q_proj.weight`,
 * `attention/blocks.3.attn` -> `blocks.3.attn`. Tags like `gradients/norm`
 * or `attention/entropy` have none and stay ungrouped.
 *
 * The group of a module path is the path up to and including its first
 * numeric component (the index into an nn.ModuleList / nn.Sequential stack:
 * `blocks.3`, `transformer.h.11`, `0` for a top-level Sequential), else its
 * top-level module (`tok_emb.weight` -> `tok_emb`).
 */

/** Sections with fewer cards stay one flat grid: groups only help with many. */
export const GROUP_MIN_CARDS = 24;
/** Sections with more cards start with their groups collapsed (an overview). */
export const AUTO_COLLAPSE_CARDS = 100;

const NUMERIC = /^\d+$/;

/**
 * The module path of a tag, or null when it names no module.
 * @param {string} tag
 * @returns {string|null}
 */
export function modulePath(tag) {
  const text = String(tag);
  const last = text.slice(text.lastIndexOf('/') + 1);
  if (!last.includes('.')) return null;
  const parts = last.split('.');
  // "a..b", ".a" or "a.": not a module path (a file name, a number).
  if (parts.some((p) => p === '')) return null;
  return last;
}

/**
 * The group of a tag (see the module comment), or null.
 * @param {string} tag
 * @returns {string|null}
 */
export function moduleGroup(tag) {
  const path = modulePath(tag);
  if (path === null) return null;
  const parts = path.split('.');
  const i = parts.findIndex((p) => NUMERIC.test(p));
  return i >= 0 ? parts.slice(0, i + 1).join('.') : parts[0];
}

/**
 * Splits the card specs of one section (sorted) into groups.
 * @param {{tag: string}[]} specs in display order
 * @param {number} [minCards=GROUP_MIN_CARDS] fewer specs: one flat list
 * @returns {{name: string|null, specs: Object[]}[]} the ungrouped specs
 *   first (name null, only when there are some), then the groups in order of
 *   their first card; one flat entry when grouping would not help (fewer
 *   than `minCards` specs, or fewer than two groups)
 */
export function groupSpecs(specs, minCards = GROUP_MIN_CARDS) {
  const flat = [{ name: null, specs: specs.slice() }];
  if (specs.length < minCards) return flat;
  const loose = [];
  const groups = new Map();
  for (const spec of specs) {
    const name = moduleGroup(spec.tag);
    if (name === null) {
      loose.push(spec);
      continue;
    }
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(spec);
  }
  if (groups.size < 2) return flat;
  const out = loose.length ? [{ name: null, specs: loose }] : [];
  for (const [name, list] of groups) out.push({ name, specs: list });
  return out;
}

// A module path typed into the filter: names joined by "." or "/", at least
// one separator (a single word stays a regular expression, as documented).
const PATH_QUERY = /^[A-Za-z0-9_-]+(?:[./][A-Za-z0-9_-]+)+$/;

/**
 * The tag filter: a module path selects that subtree of the hierarchy,
 * anything else is a case-insensitive regular expression.
 *
 * A path query (`blocks.3`, `blocks.3/attn`, `weights/blocks.3`) matches a
 * tag whose components (the tag split at "/" and ".") or whose module path's
 * components start with the query's: `blocks.3` shows block 3, not blocks
 * 30 to 39 as the regular expression would. While the last component is
 * being typed (`blocks.3/at`) and no tag has it whole, it matches as the
 * start of a component. A path that matches no tag at all falls back to the
 * regular expression.
 *
 * @param {string} text what the user typed
 * @param {Iterable<string>} tags every tag name (to tell path from regex)
 * @returns {{test: function(string): boolean, mode: 'path'|'regex'}|null}
 *   null for an empty text
 * @throws {SyntaxError} an invalid regular expression
 */
export function makeTagFilter(text, tags) {
  if (!text) return null;
  if (PATH_QUERY.test(text)) {
    const query = text.toLowerCase().split(/[./]/);
    const names = [...new Set(tags)];
    for (const partialLast of [false, true]) {
      const test = (tag) => pathMatches(query, tag, partialLast);
      if (names.some(test)) return { test, mode: 'path' };
    }
  }
  const regex = new RegExp(text, 'i');
  return { test: (tag) => regex.test(tag), mode: 'regex' };
}

function pathMatches(query, tag, partialLast) {
  const lower = String(tag).toLowerCase();
  if (startsWith(lower.split(/[./]/), query, partialLast)) return true;
  const path = modulePath(lower);
  return path !== null && startsWith(path.split('.'), query, partialLast);
}

function startsWith(parts, query, partialLast) {
  if (parts.length < query.length) return false;
  const last = query.length - 1;
  for (let i = 0; i < last; i++) if (parts[i] !== query[i]) return false;
  return partialLast ? parts[last].startsWith(query[last]) : parts[last] === query[last];
}
