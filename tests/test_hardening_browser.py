"""Hostile names in real headless Chromium: shown as text, never run as code.

Runs, tags, class names and layer names carry HTML/script payloads, URL
metacharacters, a 10 kB string, right-to-left text, emoji and the strings the
number encoding uses ("NaN", "Infinity"). A real `tensorboard` serves them;
the tab is opened in Debian's Chromium. The test asserts that

- every card loads its data (names survive the trip through URLs), except
  the one whose record is damaged, which shows the server's message,
- run names, tags and class names appear verbatim as text,
- no dialog opened, `window.__pwned` is undefined in every frame,
- the plugin iframe holds no `<img>`/`<svg>`/`<iframe>` and no `<script>`
  other than TensorBoard's own loader, and no element has an `on*` attribute.

CI must run this: a missing Chromium is a failure (tests/browser.py).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from browser import chromium, plugin_frame
from conftest import tensorboard_server

IMG = "<img src=x onerror=alert(1)>"
IMG_PWN = '<img src=x onerror="window.__pwned=1">'
SCRIPT = '"><script>window.__pwned=1</script>'
SVG = "<svg onload=alert(1)>"
URLISH = "a&b=c#d+e%20f?g;h"
RTL = "\u202eשלום עולם مرحبا"
EMOJI = "🔥 emoji 😀👍🏽"
LONG = ("A" * 4000) + IMG + ("B" * 6000)  # 10 kB, with a payload inside
NUMBERISH = "NaN"

# Runs are directories: "/" nests (the run name keeps it), 255 bytes per part.
RUNS = [IMG, SCRIPT, RTL, EMOJI + " " + URLISH]
# One tag per chart kind.
TAGS = {"heatmap": IMG_PWN, "pie": SCRIPT, "bars": LONG, "scatter": RTL + " " + EMOJI}
CLASS_NAMES = [IMG, SCRIPT, LONG, RTL, EMOJI, URLISH, NUMBERISH, SVG]
LAYER_NAMES = [IMG_PWN, SCRIPT, SVG, RTL, EMOJI, "Infinity"]
# A run with a damaged record: the tab must still load, and the broken card
# shows the server's message (which quotes the hostile tag) as text.
DAMAGED_RUN = "damaged <b>bold</b>"
BROKEN_TAG = IMG_PWN + " broken"


def write_hostile_logdir(logdir):
    import torch

    from torch_visualization import SummaryWriter, summary

    torch.manual_seed(0)
    for run in RUNS:
        with SummaryWriter(os.path.join(logdir, run)) as writer:
            for step in (0, 1):
                writer.add_weight_heatmap(TAGS["heatmap"], torch.randn(6, 9), step)
                writer.add_class_pie(
                    TAGS["pie"], np.arange(1.0, len(CLASS_NAMES) + 1), step, class_names=CLASS_NAMES
                )
                writer.add_gradient_bars(
                    TAGS["bars"], {name: i + 1.0 for i, name in enumerate(LAYER_NAMES)}, step
                )
                labels = torch.arange(24) % len(CLASS_NAMES)
                writer.add_scatter(
                    TAGS["scatter"], torch.randn(24, 2), step, labels=labels, class_names=CLASS_NAMES
                )
    with SummaryWriter(os.path.join(logdir, DAMAGED_RUN)) as writer:
        for step in (0, 1):
            writer.add_class_pie(TAGS["pie"], np.ones(len(CLASS_NAMES)), step, class_names=CLASS_NAMES)
            proto = summary.pie_summary(BROKEN_TAG, np.ones(3))
            if step == 1:
                # Tensor bytes that disagree with the tensor's own shape.
                proto.value[0].tensor.tensor_content = proto.value[0].tensor.tensor_content[:8]
            writer.file_writer.add_summary(proto, step)


@pytest.fixture(scope="module")
def hostile_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("hostile") / "logs"
    write_hostile_logdir(str(logdir))
    return logdir


# Run in every frame: did anything execute, or get into the DOM as markup?
_INSPECT = """() => {
  const onAttrs = [];
  for (const node of document.querySelectorAll('*')) {
    for (const attr of node.attributes) {
      if (attr.name.toLowerCase().startsWith('on')) onAttrs.push(node.tagName + ' ' + attr.name);
    }
  }
  return {
    pwned: typeof window.__pwned,
    img: document.querySelectorAll('img, svg, iframe, object, embed').length,
    scripts: [...document.querySelectorAll('script')].map((s) => s.src || s.textContent.slice(0, 300)),
    onAttrs,
  };
}"""


def _texts(scope, selector):
    """textContent of every match under a frame or locator."""
    return scope.locator(selector).evaluate_all("nodes => nodes.map(n => n.textContent)")


def test_hostile_names_are_text_and_nothing_runs(hostile_logdir, tmp_path):
    with tensorboard_server(hostile_logdir, "--load_fast=true") as server:
        listing = server.wait_for_tags(RUNS + [DAMAGED_RUN])["runs"]
        assert set(listing) == set(RUNS + [DAMAGED_RUN])
        assert all(set(listing[run]) == set(TAGS.values()) for run in RUNS)
        with chromium() as page:
            dialogs, page_errors = [], []

            def on_dialog(dialog):
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(server.url + "/")
            page.get_by_role("tab", name=re.compile("model insight", re.I)).click()
            frame = plugin_frame(page)
            frame.wait_for_selector(".card")

            cards = frame.locator(".card")
            assert cards.count() == len(RUNS) * len(TAGS) + 2
            # Every card loads its data: the hostile names made it into the
            # query string and back intact. Only the damaged record's card
            # fails, with the server's message.
            for i in range(cards.count()):
                card = cards.nth(i)
                card.scroll_into_view_if_needed()
                frame.wait_for_function(
                    "el => el.dataset.state !== 'loading'", arg=card.element_handle()
                )
                state = card.get_attribute("data-state")
                broken = card.get_attribute("data-tag") == BROKEN_TAG
                assert state == ("error" if broken else "ready"), (state, card.inner_text()[:300])
                if broken:
                    message = card.locator(".card-message").inner_text()
                    assert "cannot be decoded" in message and IMG_PWN in message, message

            # Names appear verbatim, as text.
            assert sorted(_texts(frame, ".run-name")) == sorted(RUNS + [DAMAGED_RUN])
            titles = _texts(frame, ".card-title")
            assert sorted(set(titles)) == sorted(set(TAGS.values()) | {BROKEN_TAG})
            assert sorted(card_run for card_run in _texts(frame, ".card-run")) == sorted(
                RUNS * len(TAGS) + [DAMAGED_RUN] * 2
            )
            pie_card = frame.locator('.card[data-kind="pie"]').first
            legend = _texts(pie_card, ".legend-name")
            assert legend == CLASS_NAMES, legend
            # The data-* hooks hold the raw names too (attributes, not markup).
            assert set(cards.evaluate_all("cs => cs.map(c => c.dataset.tag)")) == set(TAGS.values()) | {BROKEN_TAG}

            # Hover the bars: the tooltip names layers as text.
            bars = frame.locator('.card[data-kind="bars"]').first
            bars.scroll_into_view_if_needed()
            box = bars.locator("canvas").first.bounding_box()
            seen = set()
            for fx in np.linspace(0.05, 0.95, 25):
                for fy in (0.3, 0.5, 0.7):
                    page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
                    tips = frame.locator(".tooltip")
                    if tips.count():
                        seen.update(tips.first.inner_text().splitlines())
            assert any(name in seen for name in LAYER_NAMES), sorted(seen)[:20]

            page.screenshot(path=str(tmp_path / "hostile.png"), full_page=True)
            assert dialogs == [], dialogs
            for each in page.frames:
                found = each.evaluate(_INSPECT)
                assert found["pwned"] == "undefined", (each.url, found)
                assert found["onAttrs"] == [], (each.url, found["onAttrs"][:10])
                if "/data/plugin/torch_visualization/" in each.url or each == frame:
                    assert found["img"] == 0, found
                    for script in found["scripts"]:
                        assert "pwned" not in script and "alert" not in script, script
            ours = frame.evaluate(_INSPECT)
            assert ours["img"] == 0 and ours["onAttrs"] == []
            assert page_errors == [], page_errors
