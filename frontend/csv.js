/**
 * Export helpers without DOM (tests/js/csv.test.mjs): CSV URLs, joining the
 * CSV of several runs into one file, and safe download file names.
 */

/**
 * URL of the plugin's CSV route (every step of one run and tag).
 * @param {string} run
 * @param {string} tag
 * @returns {string}
 */
export function csvUrl(run, tag) {
  return `./csv?${new URLSearchParams({ run, tag })}`;
}

/**
 * Joins CSV texts that share one header line: the header once, then every
 * text's rows, each text ending with a newline.
 * @param {string[]} texts
 * @returns {string}
 */
export function joinCsv(texts) {
  let header = null;
  const parts = [];
  for (const text of texts) {
    if (!text) continue;
    const body = text.endsWith('\n') ? text : `${text}\n`;
    const cut = body.indexOf('\n');
    const first = body.slice(0, cut);
    if (header === null) {
      header = first;
      parts.push(body);
    } else {
      parts.push(first === header ? body.slice(cut + 1) : body);
    }
  }
  return parts.join('');
}

/**
 * A file name from free text (run and tag names can hold anything):
 * letters, digits, "-", "_" and "." kept, the rest "_", at most 120
 * characters before the extension.
 * @param {string[]} parts joined with "_"
 * @param {string} ext without the dot
 * @returns {string}
 */
export function fileName(parts, ext) {
  const base = parts.filter((p) => p !== undefined && p !== null && p !== '').join('_')
    .replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^[_.]+|_+$/g, '').slice(0, 120);
  return `${base || 'chart'}.${ext}`;
}
