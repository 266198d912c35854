"""A 24-block transformer's tags in 3 runs, in real headless Chromium served
by a real `tensorboard`.

The logs are synthetic but written through the public writers:
`torch_visualization.SummaryWriter.add_weight_heatmap` per parameter (~290
heatmap tags per run), `add_gradient_bars` with ~290 layer names, the
per-head entropy as bars labelled `<module>/head<k>`, and attention maps
built with `summary.attention_summary` and written through
`torch.utils.tensorboard.SummaryWriter(...).file_writer.add_summary` (a
public torch API).

Checked: the attention card draws every head (the colour of each head's
cells is the served weight on the 0..max scale) and its hover names head,
query and key (with their tokens) and the weight; module groups appear,
collapse and expand (keeping their cards and a TensorBoard reload); the
filter selects a module's subtree; bars with ~290 names draw them without
overlap (the boxes of the text actually drawn are measured) and hover is
exact; the entropy over-time view keeps rows readable. Load-to-interactive
and filter times are printed, not asserted. Screenshots land in tmp_path.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from browser import chromium, plugin_frame
from conftest import tensorboard_server

BLOCKS = 24
HEADS = 8
SEQ = 12
RUNS = ("r0_stable", "r1_collapse", "r2_long")
STEPS = (0, 10, 20, 30)
BLOCK_PARAMS = (
    ("ln1.weight", (64,)), ("ln1.bias", (64,)),
    ("attn.q_proj.weight", (64, 64)), ("attn.k_proj.weight", (64, 64)),
    ("attn.v_proj.weight", (64, 64)), ("attn.out_proj.weight", (64, 64)),
    ("ln2.weight", (64,)), ("ln2.bias", (64,)),
    ("mlp.fc1.weight", (256, 64)), ("mlp.fc1.bias", (256,)),
    ("mlp.fc2.weight", (64, 256)), ("mlp.fc2.bias", (64,)),
)
TOP_PARAMS = (("tok_emb.weight", (96, 64)), ("pos_emb.weight", (SEQ, 64)), ("ln_f.weight", (64,)), ("ln_f.bias", (64,)))
TOKENS = ["<s>", "The", " cat", " sat", " on", " the", " mat", ".", " It", " was", " <b>warm</b>", "</s>"]
PLUGIN = "/data/plugin/torch_visualization"


def parameter_names():
    names = [name for name, _ in TOP_PARAMS[:2]]
    for b in range(BLOCKS):
        names += ["blocks.%d.%s" % (b, name) for name, _ in BLOCK_PARAMS]
    return names + [name for name, _ in TOP_PARAMS[2:]]


def parameter_shapes():
    shapes = dict(TOP_PARAMS)
    for b in range(BLOCKS):
        for name, shape in BLOCK_PARAMS:
            shapes["blocks.%d.%s" % (b, name)] = shape
    return shapes


def attention_maps(rng, heads, n, sharpness):
    """Causal softmax maps [heads, n, n]; larger sharpness = lower entropy."""
    scores = rng.normal(size=(heads, n, n)) * sharpness[:, None, None]
    mask = np.triu(np.ones((n, n), dtype=bool), 1)
    scores[:, mask] = -np.inf
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def mean_entropy(maps):
    p = np.clip(maps.astype(np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1).mean(axis=-1)


def write_transformer_logdir(logdir):
    """Writes the 3 runs; returns `{run: {step: {attention tag: maps}}}`.

    r0_stable: healthy; r1_collapse: the heads of blocks 16+ sharpen over
    steps (entropy collapse), one layer's gradient is NaN at the last step;
    r2_long: 256 positions pooled to 64 (no tokens).
    """
    import torch
    from torch.utils.tensorboard import SummaryWriter as TorchWriter

    from torch_visualization import SummaryWriter, summary

    shapes = parameter_shapes()
    names = parameter_names()
    expected = {}
    for r, run in enumerate(RUNS):
        rng = np.random.default_rng(r)
        torch.manual_seed(r)
        path = os.path.join(str(logdir), run)
        weights = {name: torch.randn(*shape) * 0.1 for name, shape in shapes.items()}
        writer = SummaryWriter(path)
        raw = TorchWriter(path)
        for s, step in enumerate(STEPS):
            for name in names:
                weights[name] += torch.randn_like(weights[name]) * 0.01
                writer.add_weight_heatmap("weights/" + name, weights[name], step)
            grads = {name: float(abs(rng.normal()) * 10.0 ** -(i % 5)) for i, name in enumerate(names)}
            if run == "r1_collapse" and step == STEPS[-1]:
                grads["blocks.17.attn.q_proj.weight"] = float("nan")
            writer.add_gradient_bars("gradients/norm", grads, step)
            entropy = {}
            for b in range(BLOCKS):
                sharp = np.full(HEADS, 1.0)
                if run == "r1_collapse" and b >= 16:
                    sharp = 1.0 + s * 4.0 * (1 + np.arange(HEADS) / HEADS)
                tag = "attention/blocks.%d.attn" % b
                if run == "r2_long":
                    full = attention_maps(rng, HEADS, 256, sharp)
                    maps = full.reshape(HEADS, 64, 4, 64, 4).mean(axis=(2, 4))
                    proto = summary.attention_summary(tag, maps, original_shape=full.shape, reduction="mean_pool")
                    ent = mean_entropy(full)
                else:
                    maps = attention_maps(rng, HEADS, SEQ, sharp)
                    proto = summary.attention_summary(tag, maps, original_shape=maps.shape, tokens=TOKENS)
                    ent = mean_entropy(maps)
                raw.file_writer.add_summary(proto, step)
                expected.setdefault(run, {}).setdefault(step, {})[tag] = maps
                for k in range(HEADS):
                    entropy["blocks.%d.attn/head%d" % (b, k)] = float(ent[k])
            writer.add_gradient_bars("attention/entropy", entropy, step)
        raw.close()
        writer.close()
    return expected


@pytest.fixture(scope="module")
def transformer_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("transformer") / "runs"
    started = time.monotonic()
    expected = write_transformer_logdir(logdir)
    print("\nwrote %d runs x %d steps in %.1f s" % (len(RUNS), len(STEPS), time.monotonic() - started))
    return logdir, expected


@pytest.fixture(scope="module")
def server(transformer_logdir):
    logdir, _ = transformer_logdir
    with tensorboard_server(logdir, "--load_fast=false") as tb:
        tb.wait_for_tags(list(RUNS), timeout=180)
        yield tb


# Every fillText on our canvases, with the box of the text drawn (CSS px,
# relative to the canvas): the only honest way to see canvas labels.
RECORD_TEXT = """
(() => {
  const proto = CanvasRenderingContext2D.prototype;
  const fillText = proto.fillText;
  window.__texts = [];
  proto.fillText = function (text, x, y, maxWidth) {
    const c = this.canvas;
    if (c && c.classList && (c.classList.contains('bars-rows-canvas') || c.classList.contains('overtime-canvas'))) {
      const m = this.getTransform();
      const metrics = this.measureText(text);
      const dpr = c.width / (c.clientWidth || c.width);
      const px = (m.a * x + m.c * y + m.e) / dpr;
      const py = (m.b * x + m.d * y + m.f) / dpr;
      const w = metrics.width * Math.hypot(m.a, m.b) / dpr;
      const left = this.textAlign === 'right' || this.textAlign === 'end' ? px - w
        : this.textAlign === 'center' ? px - w / 2 : px;
      window.__texts.push({
        cls: c.classList.contains('bars-rows-canvas') ? 'rows' : 'overtime',
        probe: c.dataset.probe || '', align: this.textAlign,
        text: String(text), left, right: left + w,
        top: py - metrics.actualBoundingBoxAscent * m.d / dpr,
        bottom: py + metrics.actualBoundingBoxDescent * m.d / dpr,
        rotated: Math.abs(m.b) > 1e-6,
      });
    }
    return fillText.call(this, text, x, y, maxWidth);
  };
})();
"""


def open_tab(page, server, state=""):
    page.goto(server.url + "/#torch_visualization" + state)
    frame = plugin_frame(page)
    frame.wait_for_selector(".card, .card-group")
    return frame


def watch_errors(page):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def ready(frame, selector, timeout=60_000):
    target = frame.locator(selector).first
    target.scroll_into_view_if_needed()
    frame.wait_for_selector(selector + '[data-state="ready"]', timeout=timeout)
    return target


def shot(locator, path):
    locator.screenshot(path=str(path))
    print("screenshot:", path)
    return path


def tooltip_text(frame):
    tip = frame.locator(".tooltip").first
    tip.wait_for()
    return tip.inner_text()


def set_filter(frame, text):
    box = frame.locator(".tag-filter")
    box.fill(text)
    box.press("Enter")


def overlapping(boxes):
    """Pairs of boxes whose rectangles intersect (touching edges do not)."""
    out = []
    ordered = sorted(boxes, key=lambda b: b["top"])
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b["top"] >= a["bottom"]:
                break
            if a["left"] < b["right"] and b["left"] < a["right"]:
                out.append((a["text"], b["text"]))
    return out


# ------------------------------------------------------------ attention --


VIRIDIS = [
    (68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142),
    (31, 158, 137), (53, 183, 121), (110, 206, 88), (253, 231, 37),
]


def viridis(t):
    pos = max(0.0, min(1.0, t)) * (len(VIRIDIS) - 1)
    i = min(len(VIRIDIS) - 2, int(math.floor(pos)))
    f = pos - i
    return tuple(round(a + (b - a) * f) for a, b in zip(VIRIDIS[i], VIRIDIS[i + 1]))


def test_attention_card_draws_every_head_and_hover_names_tokens(server, transformer_logdir, tmp_path):
    _, expected = transformer_logdir
    tag = "attention/blocks.3.attn"
    maps = expected["r0_stable"][STEPS[-1]][tag]
    with chromium() as page:
        errors = watch_errors(page)
        frame = open_tab(page, server, "&p.torch_visualization.filter=" + urllib.parse.quote("attention/blocks.3"))
        card = ready(frame, '.card[data-kind="attention"][data-run="r0_stable"][data-tag="%s"]' % tag)
        canvas = card.locator(".attention-canvas")
        assert canvas.get_attribute("data-heads") == str(HEADS)
        assert "8 heads" in card.locator(".attention-info").inner_text()
        # One cell of every head (query 9, key 3) is drawn in the colour of
        # its served weight on the shared 0..max scale. The view draws its
        # maps 2 px in from the canvas corner, laid out by attentiongeom.js.
        drawn = frame.evaluate(
            """async ([canvasSel]) => {
              const geom = await import('./attentiongeom.js');
              const c = document.querySelector(canvasSel);
              const dpr = c.width / c.clientWidth;
              // Axis labels (when cells are tall enough) take a band on the left.
              const band = Number(c.dataset.labelBand || 0);
              const layout = geom.attentionLayout(%d, %d, %d, c.clientWidth - 2 - band);
              const ctx = c.getContext('2d');
              return layout.panels.map((p) => {
                const q = Math.floor(%d * 0.75), k = Math.floor(%d * 0.25);
                const x = 2 + band + p.x + (k + 0.5) * layout.cell, y = 2 + p.y + (q + 0.5) * layout.cell;
                const pixel = ctx.getImageData(Math.floor(x * dpr), Math.floor(y * dpr), 1, 1).data;
                return {head: p.head, q, k, rgb: Array.from(pixel).slice(0, 3)};
              });
            }""" % (HEADS, SEQ, SEQ, SEQ, SEQ),
            ['.card[data-kind="attention"][data-run="r0_stable"][data-tag="%s"] .attention-canvas' % tag],
        )
        top = float(maps.max())
        assert len(drawn) == HEADS
        for cell in drawn:
            want = viridis(float(maps[cell["head"], cell["q"], cell["k"]]) / top)
            assert all(abs(a - b) <= 2 for a, b in zip(cell["rgb"], want)), (cell, want)
        # Hover: head 5, query 9, key 3.
        box = canvas.bounding_box()
        q, k = 9, 3
        band = float(canvas.get_attribute("data-label-band"))
        layout_cell = frame.evaluate(
            """async (w) => (await import('./attentiongeom.js')).attentionLayout(%d, %d, %d, w - 2)""" % (HEADS, SEQ, SEQ),
            canvas.evaluate("c => c.clientWidth") - band,
        )
        panel = layout_cell["panels"][5]
        cell = layout_cell["cell"]
        page.mouse.move(box["x"] + 2 + band + panel["x"] + (k + 0.5) * cell, box["y"] + 2 + panel["y"] + (q + 0.5) * cell)
        text = tooltip_text(frame)
        lines = text.splitlines()
        assert lines[0] == "head 5", text
        assert re.search(r"query\s+9 · \"%s\"" % re.escape(TOKENS[9]), text), text
        assert re.search(r"key\s+3 · \"%s\"" % re.escape(TOKENS[3]), text), text
        weight = float(re.search(r"weight\s+([-0-9.e]+)", text).group(1))
        assert weight == pytest.approx(float(maps[5, q, k]), rel=2e-3), (weight, maps[5, q, k])
        shot(card, tmp_path / "attention-card.png")

        # The card frame's exports: CSV of every step, PNG of the view.
        page.mouse.move(0, 0)
        with page.expect_download() as info:
            card.locator(".export-csv").click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(str(path))
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        assert len(rows) == len(STEPS) * HEADS * SEQ * SEQ
        last = {r["label"]: float(r["value"]) for r in rows if r["step"] == str(STEPS[-1])}
        assert last["h5,%d,%d" % (q, k)] == pytest.approx(float(maps[5, q, k]), rel=1e-6)
        with page.expect_download() as info:
            card.locator(".export-png").click()
        png = tmp_path / ("export-" + info.value.suggested_filename)
        info.value.save_as(str(png))
        image = Image.open(png)
        assert image.format == "PNG" and image.width >= 700, image.size
        print("exported:", png)

        # The pooled run: positions are bins of the original 256.
        pooled = ready(frame, '.card[data-kind="attention"][data-run="r2_long"][data-tag="%s"]' % tag)
        assert "256×256, mean-pooled to 64×64" in pooled.locator(".attention-info").inner_text()
        pbox = pooled.locator(".attention-canvas").bounding_box()
        page.mouse.move(pbox["x"] + 8, pbox["y"] + 20)
        text = tooltip_text(frame)
        assert "head 0" in text and re.search(r"positions \d+–\d+ of 256", text), text
        shot(pooled, tmp_path / "attention-card-pooled.png")
        assert errors == []


# --------------------------------------------------------------- groups --


def test_groups_collapse_expand_survive_reload_and_filter(server, tmp_path):
    with chromium(viewport=(1400, 1000)) as page:
        errors = watch_errors(page)
        started = time.monotonic()
        page.goto(server.url + "/#torch_visualization")
        frame = plugin_frame(page)
        # Interactive: every section and group built (heatmap groups start
        # closed, so nothing below has to load first).
        frame.wait_for_function(
            "() => document.querySelectorAll('.card-group').length >= %d" % (BLOCKS + 3 + BLOCKS), timeout=60_000
        )
        interactive = time.monotonic() - started
        in_page = frame.evaluate(
            "() => performance.timeOrigin + performance.now() - window.parent.performance.timeOrigin"
        )
        heat = frame.locator('.kind-section[data-kind="heatmap"]')
        groups = heat.locator(".card-group")
        names = groups.evaluate_all("gs => gs.map(g => g.dataset.group)")
        assert set(names) == {"blocks.%d" % b for b in range(BLOCKS)} | {"tok_emb", "pos_emb", "ln_f"}, names
        blocks = [n for n in names if n.startswith("blocks.")]
        assert blocks == ["blocks.%d" % b for b in range(BLOCKS)], "natural order"
        # 876 heatmap cards: groups start closed, no heatmap card is built.
        assert heat.locator(".section-count").inner_text() == str(len(RUNS) * (BLOCKS * 12 + 4))
        assert set(groups.evaluate_all("gs => gs.map(g => g.dataset.open)")) == {"false"}
        assert frame.locator('.card[data-kind="heatmap"]').count() == 0
        assert groups.nth(names.index("blocks.3")).locator(".group-count").inner_text() == "36 charts"
        shot(frame.locator(".tv-app"), tmp_path / "grouped-tab.png")

        # Open blocks.3: its 36 cards; move one slider; close; open again.
        group = heat.locator('.card-group[data-group="blocks.3"]')
        toggle = group.locator(".group-toggle")
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "true"
        assert group.locator(".card").count() == 36
        tags = set(group.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.tag)"))
        assert tags == {"weights/blocks.3." + name for name, _ in BLOCK_PARAMS}
        first = ready(frame, '.card-group[data-group="blocks.3"] .card[data-kind="heatmap"]')
        slider = first.locator(".step-slider")
        slider.focus()
        slider.press("Home")
        frame.wait_for_function("el => el.dataset.step === '0' && el.dataset.state === 'ready'", arg=first.element_handle())
        shot(group, tmp_path / "group-blocks3-open.png")
        toggle.click()
        assert group.get_attribute("data-open") == "false"
        assert group.locator(".card").count() == 0 and group.locator(".group-grid").is_hidden()
        toggle.click()
        assert group.locator(".card").count() == 36
        assert first.get_attribute("data-step") == "0", "the card (and its slider) was kept"

        # TensorBoard's reload keeps which groups are open.
        reloads = int(frame.locator(".tv-app").get_attribute("data-reloads"))
        page.locator("button.reload-button").first.click()
        frame.wait_for_function("n => Number(document.querySelector('.tv-app').dataset.reloads) > n", arg=reloads)
        assert group.get_attribute("data-open") == "true"
        assert heat.locator('.card-group[data-group="blocks.4"]').get_attribute("data-open") == "false"
        assert group.locator(".card").count() == 36

        # Expand all (876 heatmap cards built at once), then collapse all.
        expand = frame.evaluate(
            """async () => {
              const section = document.querySelector('.kind-section[data-kind="heatmap"]');
              const t0 = performance.now();
              section.querySelector('.groups-open-all').click();
              const built = performance.now() - t0;
              await new Promise((r) => requestAnimationFrame(() => setTimeout(r)));
              return {built, frame: performance.now() - t0, cards: section.querySelectorAll('.card').length};
            }"""
        )
        heat_cards = len(RUNS) * (BLOCKS * 12 + 4)
        assert expand["cards"] == heat_cards
        assert set(groups.evaluate_all("gs => gs.map(g => g.dataset.open)")) == {"true"}
        heat.locator(".groups-close-all").click()
        assert set(groups.evaluate_all("gs => gs.map(g => g.dataset.open)")) == {"false"}
        assert heat.locator(".card").count() == 0

        # The attention section (72 cards) is grouped too, and open.
        att = frame.locator('.kind-section[data-kind="attention"]')
        assert att.locator(".card-group").count() == BLOCKS
        assert set(att.locator(".card-group").evaluate_all("gs => gs.map(g => g.dataset.open)")) == {"true"}

        # Filter: a module path selects that subtree; blocks.1 is not 10-19.
        timings = {}
        for text, want in (
            ("blocks.1", {"weights/blocks.1." + n for n, _ in BLOCK_PARAMS} | {"attention/blocks.1.attn"}),
            ("blocks.1/attn", {"weights/blocks.1." + n for n, _ in BLOCK_PARAMS if n.startswith("attn.")}
             | {"attention/blocks.1.attn"}),
            ("blocks.1/mlp", {"weights/blocks.1." + n for n, _ in BLOCK_PARAMS if n.startswith("mlp.")}),
            ("^gradients/|entropy", {"gradients/norm", "attention/entropy"}),
        ):
            t0 = time.monotonic()
            set_filter(frame, text)
            frame.wait_for_function(
                "n => document.querySelectorAll('.card').length === n", arg=len(want) * len(RUNS), timeout=30_000
            )
            timings[text] = (time.monotonic() - t0) * 1000
            shown = set(frame.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.tag)"))
            assert shown == want, (text, sorted(shown ^ want))
        # A keystroke measured inside the page: input event to cards updated
        # (the filter waits 150 ms for more typing; Enter skips the wait).
        keystroke = frame.evaluate(
            """async () => {
              const input = document.querySelector('.tag-filter');
              const t0 = performance.now();
              input.value = 'blocks.2';
              input.dispatchEvent(new Event('input'));
              input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
              const n = document.querySelectorAll('.card').length;
              const t1 = performance.now();
              await new Promise((r) => requestAnimationFrame(() => setTimeout(r)));
              return {ms: t1 - t0, frameMs: performance.now() - t0, cards: n};
            }"""
        )
        assert keystroke["cards"] == 13 * len(RUNS)
        set_filter(frame, "")
        frame.wait_for_function("() => document.querySelectorAll('.card-group').length > 24")
        print(
            "\n24 blocks x 3 runs (%d tags): groups built %.0f ms after navigation (measured by the test), "
            "%.0f ms after TensorBoard's navigation start (in the page); filter (fill+Enter to cards) %s; "
            "one filter keystroke %.1f ms to cards updated, %.1f ms to the next frame; "
            "expand all heatmap groups (%d cards) %.0f ms to built, %.0f ms to the next frame"
            % (
                len(RUNS) * (BLOCKS * 12 + 6 + BLOCKS), interactive * 1000, in_page,
                ", ".join("%r %.0f ms" % kv for kv in timings.items()), keystroke["ms"], keystroke["frameMs"],
                expand["cards"], expand["built"], expand["frame"],
            )
        )
        assert errors == []


# ----------------------------------------------------------------- bars --


def test_bars_with_290_labels_do_not_overlap_and_hover_is_exact(server, tmp_path):
    names = parameter_names()
    with chromium() as page:
        page.add_init_script(RECORD_TEXT)
        errors = watch_errors(page)
        frame = open_tab(page, server, "&p.torch_visualization.filter=" + urllib.parse.quote("^gradients/"))
        card = ready(frame, '.card[data-kind="bars"][data-run="r1_collapse"][data-tag="gradients/norm"]')
        scroller = card.locator(".bars-scroll")
        assert scroller.is_visible()
        rows_canvas = card.locator(".bars-rows-canvas")
        rows_canvas.evaluate("c => { c.dataset.probe = 'yes'; }")

        def drawn_labels():
            # Names are the right-aligned column left of the bars.
            return frame.evaluate("() => window.__texts.filter(t => t.probe === 'yes' && t.align === 'right')")

        for where in ("top", "middle", "bottom"):
            frame.evaluate("() => { window.__texts = []; }")
            scroller.evaluate(
                "(el, where) => { el.scrollTop = where === 'top' ? 0 : where === 'middle' ? el.scrollHeight / 2 : el.scrollHeight;"
                " el.dispatchEvent(new Event('scroll')); }",
                where,
            )
            frame.wait_for_function("() => window.__texts.some(t => t.probe === 'yes')")
            labels = drawn_labels()
            view = scroller.evaluate("el => el.clientHeight")
            assert len(labels) >= view // 16, (where, len(labels))
            assert overlapping(labels) == [], where
            for t in labels:
                assert t["bottom"] - t["top"] <= 16
                full = [n for n in names if n == t["text"]]
                if not full:  # cut in the middle: both ends are the name's
                    head, _, tail = t["text"].partition("…")
                    assert head and any(n.startswith(head) and n.endswith(tail) for n in names), t["text"]
            if where == "bottom":
                assert labels[-1]["text"] == names[-1]
            if where == "top":
                assert labels[0]["text"] == names[0]
                assert [t["text"] for t in labels[:3]] == names[:3]
        shot(card, tmp_path / "bars-290-rows.png")
        # The PNG export holds every row, not the scrolled window.
        with page.expect_download() as info:
            card.locator(".export-png").click()
        png = tmp_path / ("export-" + info.value.suggested_filename)
        info.value.save_as(str(png))
        height = Image.open(png).height
        assert height >= 2 * 16 * len(names), height
        print("exported:", png, Image.open(png).size)

        # Hover exact: the row under the mouse is the one named in the tooltip.
        scroller.evaluate("el => { el.scrollTop = 16 * 100; }")
        page.wait_for_timeout(100)
        box = rows_canvas.bounding_box()
        for k in (100, 107, 118):
            y = box["y"] + (k * 16 - 16 * 100) + 8
            page.mouse.move(box["x"] + box["width"] * 0.7, y)
            first_line = tooltip_text(frame).splitlines()[0]
            assert first_line == names[k], (k, first_line)
        # The NaN layer is flagged red and listed in the legend.
        assert "NaN / Inf (1 layer)" in card.locator(".bars-legend").inner_text()
        assert card.locator(".nonfinite-badge").inner_text() == "1 non-finite"
        assert errors == []


def test_entropy_over_time_rows_readable(server, tmp_path):
    labels = ["blocks.%d.attn/head%d" % (b, k) for b in range(BLOCKS) for k in range(HEADS)]
    # Tall enough for the whole card: element screenshots stop at the frame.
    with chromium(viewport=(1400, 1900)) as page:
        page.add_init_script(RECORD_TEXT)
        errors = watch_errors(page)
        frame = open_tab(page, server, "&p.torch_visualization.view=overtime&p.torch_visualization.filter=entropy")
        card = ready(frame, '.card[data-view="overtime"][data-run="r1_collapse"][data-tag="attention/entropy"]')
        canvas = card.locator(".overtime-canvas")
        height = canvas.evaluate("c => c.clientHeight")
        assert height >= len(labels) * 6, "rows collapsed below 6 px"
        # One draw of this card's canvas (leaving it redraws).
        canvas.evaluate("c => { c.dataset.probe = 'yes'; window.__texts = []; c.dispatchEvent(new MouseEvent('mouseleave')); }")
        texts = frame.evaluate("() => window.__texts.filter(t => t.probe === 'yes' && !t.rotated)")
        row_labels = [t for t in texts if t["align"] == "right"]
        assert all(t["text"] in labels for t in row_labels), [t["text"] for t in row_labels if t["text"] not in labels]
        assert len(row_labels) >= len(labels) // 2, len(row_labels)
        assert overlapping(row_labels) == []
        # Hover a row: its full name and the step.
        box = canvas.bounding_box()
        shot(card, tmp_path / "entropy-over-time.png")
        page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + 4 + 0.5)
        text = tooltip_text(frame)
        assert text.splitlines()[0] == labels[0], text
        assert "step" in text
        assert errors == []
