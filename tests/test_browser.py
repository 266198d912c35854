"""The tab in real headless Chromium, served by a real `tensorboard`.

Runs the demo (shortened), opens TensorBoard, switches to the Model Insight
tab, waits for the four card kinds, moves a step slider, hovers a heatmap
cell and saves screenshots under the test's tmp dir.
"""

from __future__ import annotations

import io
import re
import time

import pytest
from PIL import Image, ImageStat

from browser import chromium, plugin_frame
from conftest import tensorboard_server

KINDS = ("heatmap", "pie", "bars", "scatter")


@pytest.fixture(scope="module")
def demo_logdir(demo_runs):
    return demo_runs


def open_tab(page, server):
    page.goto(server.url + "/")
    page.get_by_role("tab", name=re.compile("model insight", re.I)).click()
    return plugin_frame(page)


def card(frame, kind, run):
    return frame.locator('.card[data-kind="%s"][data-run="%s"]' % (kind, run)).first


def assert_not_blank(png_bytes):
    """A drawn chart has more than one colour and real contrast."""
    image = Image.open(io.BytesIO(png_bytes)).convert("L")
    low, high = image.getextrema()
    assert high - low > 60, "screenshot looks blank (grey range %d..%d)" % (low, high)
    assert ImageStat.Stat(image).stddev[0] > 5


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_tab_shows_four_kinds_slider_and_hover(demo_logdir, tmp_path, load_fast):
    with tensorboard_server(demo_logdir, "--load_fast=%s" % load_fast) as server:
        tags = server.wait_for_tags(["healthy", "vanishing"])
        assert set(KINDS) <= {info["kind"] for info in tags["runs"]["healthy"].values()}
        with chromium(device_scale_factor=2) as page:
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            frame = open_tab(page, server)
            for kind in KINDS:
                target = card(frame, kind, "healthy")
                target.scroll_into_view_if_needed()
                frame.wait_for_selector(
                    '.card[data-kind="%s"][data-run="healthy"][data-state="ready"]' % kind
                )
                assert_not_blank(target.locator("canvas").first.screenshot())

            heatmap = card(frame, "heatmap", "healthy")
            heatmap.scroll_into_view_if_needed()
            slider = heatmap.locator(".step-slider")
            step_value = heatmap.locator(".step-value")
            last_step = step_value.inner_text()
            slider.focus()
            slider.press("Home")
            frame.wait_for_function(
                "([el, old]) => el.textContent.trim() !== old",
                arg=[step_value.element_handle(), last_step],
            )
            assert re.search(r"\b0\b", step_value.inner_text()), step_value.inner_text()
            frame.wait_for_selector(
                '.card[data-kind="heatmap"][data-run="healthy"][data-state="ready"]'
            )

            canvas = heatmap.locator("canvas").first
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
            tooltip = frame.locator(".tooltip:visible").first
            tooltip.wait_for()
            text = tooltip.inner_text().lower()
            assert "row" in text and ("col" in text or "column" in text), text
            assert re.search(r"-?\d+(\.\d+)?(e-?\d+)?", text)

            page.screenshot(path=str(tmp_path / ("tab-%s.png" % load_fast)), full_page=True)
            assert (tmp_path / ("tab-%s.png" % load_fast)).stat().st_size > 10_000
            assert errors == []


def test_hundred_cards_load_lazily(tmp_path):
    """120 cards: the first ones render, cards below the fold wait for scrolling."""
    import torch

    from torch_visualization import SummaryWriter

    logdir = tmp_path / "many"
    with SummaryWriter(str(logdir / "run")) as writer:
        for i in range(120):
            writer.add_weight_heatmap("weights/layer%03d" % i, torch.randn(16, 16), 0)
    with tensorboard_server(logdir, "--load_fast=false") as server:
        server.wait_for_tags(["run"])
        with chromium() as page:
            requests = []
            page.on("request", lambda r: requests.append(r.url) if "/data?" in r.url else None)
            started = time.monotonic()
            frame = open_tab(page, server)
            frame.wait_for_selector('.card[data-state="ready"]')
            first_ready = time.monotonic() - started
            assert frame.locator(".card").count() == 120
            data_requests_before_scroll = len(requests)
            assert 0 < data_requests_before_scroll < 120
            frame.locator(".card").last.scroll_into_view_if_needed()
            frame.wait_for_selector('.card[data-tag="weights/layer119"][data-state="ready"]')
            assert len(requests) > data_requests_before_scroll
            print(
                "\n120 cards: first card ready %.2f s after navigation; %d data requests "
                "before scrolling" % (first_ready, data_requests_before_scroll)
            )
