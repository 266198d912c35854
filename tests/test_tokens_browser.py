"""Token labels on the attention card, in real headless Chromium served by a
real `tensorboard`, from runs written by `watch(..., tokens=...)`.

Checked: hovering a cell names the query's and the key's tokens of the step
shown (and they change with the step slider), axis labels are the step's
tokens when cells are tall enough, and a pooled map names each bin's token
range. Screenshots land in /tmp/shots/ (and tmp_path).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse

import pytest

from browser import chromium, plugin_frame
from conftest import http_get, tensorboard_server

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "home", "fast", "slow", "red"]
HEADS = 2
PLUGIN = "/data/plugin/torch_visualization"
TAG = "attention/attn"
SHOTS = "/tmp/shots"

# Every fillText on attention canvases (the only honest way to read canvas labels).
RECORD_TEXT = """
(() => {
  const proto = CanvasRenderingContext2D.prototype;
  const fillText = proto.fillText;
  window.__attentionTexts = [];
  proto.fillText = function (text, x, y, maxWidth) {
    if (this.canvas && this.canvas.classList && this.canvas.classList.contains('attention-canvas')) {
      window.__attentionTexts.push({ text: String(text), rotated: Math.abs(this.getTransform().b) > 1e-6 });
    }
    return fillText.call(this, text, x, y, maxWidth);
  };
})();
"""


def write_runs(logdir):
    """Run "short": 10 positions, steps 0 and 1 with different inputs; run
    "long": 200 positions (maps pooled to 64). Returns the first example's
    words per run and step."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from torch_visualization import SummaryWriter

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(16, 48)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, 8).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, n, 16)

    class Lm(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(len(WORDS), 16)
            self.attn = SelfAttention()
            self.head = nn.Linear(16, len(WORDS))

        def forward(self, input_ids):
            return self.head(self.attn(self.emb(input_ids)))

    expected = {}
    for run, length in (("short", 10), ("long", 200)):
        torch.manual_seed(len(run))
        model = Lm()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        writer = SummaryWriter(os.path.join(str(logdir), run))
        writer.watch(model, optimizer, log_every=1, tokens=WORDS, outputs="classes")
        for step in range(2):
            ids = torch.randint(0, len(WORDS), (2, length))
            expected.setdefault(run, {})[step] = [WORDS[i] for i in ids[0].tolist()]
            optimizer.zero_grad()
            model(input_ids=ids).pow(2).mean().backward()
            optimizer.step()
        writer.close()
    assert expected["short"][0] != expected["short"][1]
    return expected


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("tokens") / "runs"
    expected = write_runs(logdir)
    with tensorboard_server(logdir, "--load_fast=false") as tb:
        tb.wait_for_tags(["short", "long"], timeout=180)
        yield tb, expected


def served_weight(server, run, step, head, query, key):
    status, body = http_get(server.url + PLUGIN + "/data?" + urllib.parse.urlencode(
        {"run": run, "tag": TAG, "step": step}))
    assert status == 200, body
    return json.loads(body)["values"][head][query][key]


def ready(frame, selector):
    target = frame.locator(selector).first
    target.scroll_into_view_if_needed()
    frame.wait_for_selector(selector + '[data-state="ready"]', timeout=60_000)
    return target


def hover_cell(page, frame, card, n, head, query, key):
    """Moves the mouse over one cell, laid out as the view lays it out
    (attentiongeom.js, 2 px in, right of the axis label band)."""
    canvas = card.locator(".attention-canvas")
    frame.wait_for_function("c => c.dataset.heads !== undefined", arg=canvas.element_handle())
    band = float(canvas.get_attribute("data-label-band"))
    width = canvas.evaluate("c => c.clientWidth")
    layout = frame.evaluate(
        """async ([heads, n, w]) => (await import('./attentiongeom.js')).attentionLayout(heads, n, n, w)""",
        [HEADS, n, width - 2 - band],
    )
    panel = layout["panels"][head]
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 2 + band + panel["x"] + (key + 0.5) * layout["cell"],
                    box["y"] + 2 + panel["y"] + (query + 0.5) * layout["cell"])
    tip = frame.locator(".tooltip").first
    tip.wait_for()
    return tip.inner_text(), band


def shot(locator, name, tmp_path):
    os.makedirs(SHOTS, exist_ok=True)
    for folder in (SHOTS, str(tmp_path)):
        locator.screenshot(path=os.path.join(folder, name))


def pick_step(frame, card, key):
    value = card.locator(".step-value")
    old = value.inner_text()
    slider = card.locator(".step-slider")
    slider.focus()
    slider.press(key)
    frame.wait_for_function("([el, old]) => el.textContent.trim() !== old", arg=[value.element_handle(), old])


def test_hover_and_axes_name_the_tokens_of_the_step_shown(served, tmp_path):
    server, expected = served
    with chromium(viewport=(1400, 1000)) as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(RECORD_TEXT)
        page.goto(server.url + "/#torch_visualization&p.torch_visualization.filter=" + urllib.parse.quote(TAG))
        frame = plugin_frame(page)
        frame.wait_for_selector(".card, .card-group")
        selector = '.card[data-kind="attention"][data-run="short"][data-tag="%s"]' % TAG
        card = ready(frame, selector)
        frame.wait_for_selector(selector + '[data-step="1"]')
        head, query, key = 1, 7, 2
        text, band = hover_cell(page, frame, card, 10, head, query, key)
        words = expected["short"][1]
        assert re.search(r"query\s+%d · \"%s\"" % (query, words[query]), text), text
        assert re.search(r"key\s+%d · \"%s\"" % (key, words[key]), text), text
        weight = served_weight(server, "short", 1, head, query, key)
        summary = 'query %d "%s" → key %d "%s": ' % (query, words[query], key, words[key])
        assert summary in text, text
        assert float(text.split(summary)[1].split()[0]) == pytest.approx(weight, rel=2e-3)
        # Axis labels: the step's tokens, queries upright and keys rotated.
        assert band > 0
        drawn = frame.evaluate("() => window.__attentionTexts.splice(0)")
        upright = [d["text"] for d in drawn if not d["rotated"] and not d["text"].startswith("head")]
        rotated = [d["text"] for d in drawn if d["rotated"]]
        assert upright[-len(words):] == words, upright
        assert rotated[-len(words):] == words, rotated
        shot(card, "attention-tokens-step1.png", tmp_path)

        # Step 0: other inputs, other tokens (stale responses are dropped by
        # the card: the tooltip shows what the card shows).
        page.mouse.move(0, 0)
        pick_step(frame, card, "Home")
        frame.wait_for_selector(selector + '[data-step="0"][data-state="ready"]')
        text, _ = hover_cell(page, frame, card, 10, head, query, key)
        words0 = expected["short"][0]
        assert re.search(r"query\s+%d · \"%s\"" % (query, words0[query]), text), text
        assert re.search(r"key\s+%d · \"%s\"" % (key, words0[key]), text), text
        shot(card, "attention-tokens-step0.png", tmp_path)

        # Pooled: 200 positions onto 64 bins; a bin names its first…last token.
        page.mouse.move(0, 0)
        long_card = ready(frame, '.card[data-kind="attention"][data-run="long"][data-tag="%s"]' % TAG)
        frame.wait_for_selector('.card[data-run="long"][data-step="1"]')
        canvas = long_card.locator(".attention-canvas")
        assert canvas.get_attribute("data-label-band") == "0"  # ranges do not fit an axis
        text, _ = hover_cell(page, frame, long_card, 64, 0, 1, 0)
        words = expected["long"][1]
        # poolingBin: stored 1 of 64 covers 3..6 (floor(200/64), ceil(400/64)).
        assert re.search(r'query\s+positions 3–6 of 200 · "%s"…"%s"' % (words[3], words[6]), text), text
        assert re.search(r'key\s+positions 0–3 of 200 · "%s"…"%s"' % (words[0], words[3]), text), text
        shot(long_card, "attention-tokens-pooled.png", tmp_path)
        assert errors == []
