/**
 * Scatter view: [x, y, class] points coloured by class, a class legend and
 * a tooltip with x, y and class of the nearest point. Points with a
 * non-finite coordinate cannot be placed; a note lists them.
 */

import {
  classColor, formatValue, labelFor, linearTicks, nearestPoint, scatterLayout,
} from '../charts.js';
import { CANVAS_FONT, el, setupCanvas, trackHover } from '../dom.js';
import { drawValueGrid } from './axes.js';

const HEIGHT = 260;
const MARGIN = { left: 42, right: 8, top: 6, bottom: 20 };
const RADIUS = 3;

/**
 * Mounts a scatter plot in `container`.
 * @param {HTMLElement} container the card body
 * @param {{show: Function, hide: Function}} tooltip the card's tooltip
 * @returns {{update: function(Object): void, redraw: function(): void}}
 */
export function createScatterView(container, tooltip) {
  const canvas = el('canvas', { class: 'chart-canvas scatter-canvas', 'aria-label': 'scatter plot' });
  const note = el('div', { class: 'view-note is-nonfinite', hidden: true });
  const legend = el('ul', { class: 'legend scatter-legend' });
  container.append(canvas, note, legend);

  let rows = [];
  let labels = [];
  let layout = null;

  function draw() {
    if (!rows.length && !layout) return;
    const { ctx, width, height } = setupCanvas(canvas, HEIGHT);
    const box = {
      x: MARGIN.left,
      y: MARGIN.top,
      width: width - MARGIN.left - MARGIN.right,
      height: height - MARGIN.top - MARGIN.bottom,
    };
    layout = scatterLayout(rows, box, RADIUS + 4);
    drawAxes(ctx, box);
    ctx.lineWidth = 0.75;
    ctx.strokeStyle = 'rgba(255, 255, 255, 0.9)';
    for (const p of layout.points) {
      ctx.beginPath();
      ctx.arc(p.px, p.py, RADIUS, 0, 2 * Math.PI);
      ctx.fillStyle = classColor(p.cls);
      ctx.fill();
      ctx.stroke();
    }
    if (hover.current >= 0 && layout.points[hover.current]) {
      const p = layout.points[hover.current];
      ctx.beginPath();
      ctx.arc(p.px, p.py, RADIUS + 3, 0, 2 * Math.PI);
      ctx.strokeStyle = '#212121';
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
  }

  function drawAxes(ctx, box) {
    ctx.font = CANVAS_FONT;
    ctx.lineWidth = 1;
    ctx.strokeStyle = '#e0e0e0';
    ctx.strokeRect(box.x + 0.5, box.y + 0.5, box.width - 1, box.height - 1);
    ctx.fillStyle = '#757575';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const t of linearTicks(layout.xDomain[0], layout.xDomain[1], 4)) {
      const x = Math.round(layout.toPx(t)) + 0.5;
      if (x < box.x || x > box.x + box.width) continue;
      ctx.strokeStyle = '#f0f0f0';
      ctx.beginPath();
      ctx.moveTo(x, box.y);
      ctx.lineTo(x, box.y + box.height);
      ctx.stroke();
      ctx.fillText(formatValue(t), x, box.y + box.height + 4);
    }
    drawValueGrid(ctx, box, linearTicks(layout.yDomain[0], layout.yDomain[1], 4), layout.toPy, {
      color: '#f0f0f0', slack: 0,
    });
  }

  function buildLegend() {
    const counts = new Map();
    for (const r of rows) {
      const c = Number.isInteger(r[2]) && r[2] >= 0 ? r[2] : -1;
      counts.set(c, (counts.get(c) || 0) + 1);
    }
    // Every named class is listed (absent ones dimmed) so colours stay
    // recognisable from step to step; unnamed classes only when present.
    const classes = new Set([...labels.keys(), ...counts.keys()]);
    const items = [...classes].sort((a, b) => (a < 0) - (b < 0) || a - b).map((c) => el('li', {
      class: `legend-item${counts.has(c) ? '' : ' is-absent'}`,
      title: `${labelFor(labels, c)}: ${counts.get(c) || 0} points`,
    }, [
      el('span', { class: 'swatch swatch-round', style: { background: classColor(c) } }),
      el('span', { class: 'legend-name', text: labelFor(labels, c) }),
    ]));
    legend.replaceChildren(...items);
  }

  function showNote() {
    const bad = layout ? layout.nonfinite : [];
    note.hidden = bad.length === 0;
    if (bad.length) {
      const shown = bad.slice(0, 5).map((i) => `#${i}`).join(', ');
      note.textContent = `${bad.length} point${bad.length > 1 ? 's' : ''} with NaN/Inf coordinates not plotted: `
        + `${shown}${bad.length > 5 ? ', …' : ''}`;
    }
  }

  const hover = trackHover(canvas, tooltip, {
    hitAt: (event) => (layout ? nearestPoint(layout.points, event.offsetX, event.offsetY, 10) : undefined),
    lines: (i) => {
      const p = layout.points[i];
      return [
        labelFor(labels, p.cls),
        ['x', formatValue(p.x)],
        ['y', formatValue(p.y)],
        ['class', p.cls >= 0 ? `${labelFor(labels, p.cls)} (${p.cls})` : 'none'],
        ['point', `#${p.index}`],
      ];
    },
    redraw: draw,
  });

  return {
    update(data) {
      rows = data.values;
      labels = data.labels || [];
      hover.clear();
      draw();
      buildLegend();
      showNote();
    },
    redraw: draw,
    exportParts: () => ({
      canvases: [{ canvas }],
      legend: [...legend.querySelectorAll('.legend-item')].map((item) => ({
        color: item.firstChild.style.background, label: item.textContent,
      })),
      warnings: note.hidden ? [] : [note.textContent],
    }),
  };
}
