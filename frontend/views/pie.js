/**
 * Pie view: one slice per class, a legend with class names and shares, a
 * tooltip with value and percent. Non-finite (or negative) class values get
 * no slice but stay in the legend, marked in red with their value.
 */

import {
  classColor, formatPercent, formatValue, labelFor, NONFINITE_COLOR, pieHit, pieSlices,
} from '../charts.js';
import { CANVAS_FONT, el, setupCanvas, trackHover } from '../dom.js';

const SIZE = 200;

/**
 * Mounts a pie in `container`.
 * @param {HTMLElement} container the card body
 * @param {{show: Function, hide: Function}} tooltip the card's tooltip
 * @returns {{update: function(Object): void, redraw: function(): void}}
 */
export function createPieView(container, tooltip) {
  const canvas = el('canvas', { class: 'chart-canvas pie-canvas', 'aria-label': 'pie chart' });
  const legend = el('ul', { class: 'legend pie-legend' });
  container.append(el('div', { class: 'pie-layout' }, [canvas, legend]));

  let values = [];
  let labels = [];
  let pie = null;
  let geom = null;
  let legendItems = [];
  let focused = new Set(); // class names a clicked finding points at

  // The hovered slice lifts; with none hovered, the first focused one does.
  function draw() {
    const lifted = hover.current >= 0 ? hover.current : values.findIndex((_, i) => focused.has(labelFor(labels, i)));
    if (pie) geom = paintPie(canvas, SIZE, pie, lifted, 5);
  }

  function buildLegend() {
    legendItems = values.map((v, i) => {
      const bad = Number.isNaN(pie.percents[i]);
      const item = el('li', {
        class: `legend-item${bad ? ' is-nonfinite' : ''}${focused.has(labelFor(labels, i)) ? ' is-focus' : ''}`,
        title: `${labelFor(labels, i)}: ${formatValue(v)}`,
        dataset: { index: String(i) },
      }, [
        el('span', { class: `swatch${bad ? ' swatch-nonfinite' : ''}`, style: bad ? {} : { background: classColor(i) } }),
        el('span', { class: 'legend-name', text: labelFor(labels, i) }),
        el('span', { class: 'legend-value', text: bad ? formatValue(v) : formatPercent(pie.percents[i]) }),
      ]);
      item.addEventListener('mouseenter', () => hover.set(i));
      item.addEventListener('mouseleave', () => hover.set(-1));
      return item;
    });
    legend.replaceChildren(...legendItems);
  }

  // Slice and legend entry light up together, from either side.
  const hover = trackHover(canvas, tooltip, {
    hitAt: (event) => {
      if (!geom || !pie) return undefined;
      return pieHit(pie.slices, geom.cx, geom.cy, geom.r, event.offsetX, event.offsetY);
    },
    lines: (i) => [
      labelFor(labels, i),
      ['value', formatValue(values[i])],
      ['share', formatPercent(pie.percents[i])],
    ],
    redraw: () => {
      legendItems.forEach((item, i) => item.classList.toggle('is-hover', i === hover.current));
      draw();
    },
  });

  return {
    update(data) {
      values = data.values;
      labels = data.labels || [];
      pie = pieSlices(values);
      hover.clear();
      buildLegend();
      draw();
    },
    redraw: draw,
    /**
     * Lifts the slice and marks the legend entry of `labels` (a clicked
     * finding's classes).
     * @returns {string[]} the labels that are classes of this chart
     */
    focus({ labels: names = [] } = {}) {
      focused = new Set(names);
      legendItems.forEach((item, i) => item.classList.toggle('is-focus', focused.has(labelFor(labels, i))));
      draw();
      const present = new Set(values.map((_, i) => labelFor(labels, i)));
      return names.filter((name) => present.has(name));
    },
    exportParts: () => ({
      canvases: [{ canvas }],
      legend: values.map((v, i) => {
        const bad = Number.isNaN(pie.percents[i]);
        return {
          color: bad ? NONFINITE_COLOR : classColor(i),
          label: `${labelFor(labels, i)} ${bad ? formatValue(v) : formatPercent(pie.percents[i])}`,
          flagged: bad,
        };
      }),
    }),
  };
}

/**
 * Draws `pie` (pieSlices) filling a square-ish canvas: the hovered slice
 * moves out by `lift` px so it reads as selected; a pie without a share
 * (all zero or none finite) is a dashed circle saying so.
 * @param {HTMLCanvasElement} canvas
 * @param {number} size canvas height (CSS px)
 * @param {ReturnType<typeof pieSlices>} pie
 * @param {number} hover index of the hovered class, or -1
 * @param {number} lift
 * @returns {{cx: number, cy: number, r: number}} the geometry, for pieHit
 */
export function paintPie(canvas, size, pie, hover, lift) {
  const { ctx, width, height } = setupCanvas(canvas, size);
  const r = Math.min(width, height) / 2 - 8;
  const geom = { cx: width / 2, cy: height / 2, r };
  if (pie.allZero) {
    ctx.strokeStyle = '#bdbdbd';
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.arc(geom.cx, geom.cy, r, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = '#757575';
    ctx.font = CANVAS_FONT;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(pie.invalid.length ? 'no finite share' : 'all values are 0', geom.cx, geom.cy);
    return geom;
  }
  for (const s of pie.slices) {
    const out = s.index === hover ? lift : 0;
    const mid = (s.start + s.end) / 2;
    const ox = Math.cos(mid) * out;
    const oy = Math.sin(mid) * out;
    ctx.beginPath();
    ctx.moveTo(geom.cx + ox, geom.cy + oy);
    ctx.arc(geom.cx + ox, geom.cy + oy, r - (out ? 0 : 2), s.start, s.end);
    ctx.closePath();
    ctx.fillStyle = classColor(s.index);
    ctx.fill();
    if (pie.slices.length > 1) {
      ctx.strokeStyle = '#ffffff';
      ctx.lineWidth = 1;
      ctx.stroke();
    }
  }
  return geom;
}
