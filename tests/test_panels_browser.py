"""The tab's panels in real headless Chromium, served by a real `tensorboard`.

Over the demo's two runs (plus a few extra tags written here: a confusion
matrix with class names, bars with a NaN layer): compare runs, the
over-time views and their log scale, the confusion matrix hover, sorting,
PNG and CSV export (the files are read back), the error banner, keyboard
use, state in the URL across a page reload, TensorBoard's reload button
refreshing the tab without losing selection, slider or scroll, linked step
sliders, and 200 cards over 5 runs (figures printed, not asserted).

Screenshots land in each test's tmp dir (paths printed). CI must run these:
a missing Chromium is a failure (tests/browser.py), never a skip.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image, ImageChops

from browser import chromium, plugin_frame
from conftest import tensorboard_server

ANIMALS = ["cat", "dog", "bird"]
CSV_COLUMNS = ["run", "tag", "kind", "step", "wall_time", "index", "label", "stat", "value"]
PLUGIN = "/data/plugin/torch_visualization"


def write_extra_tags(logdir):
    """Tags the demo does not log, added to its "healthy" run."""
    import torch

    from torch_visualization import SummaryWriter

    with SummaryWriter(os.path.join(str(logdir), "healthy")) as writer:
        for step, shift in ((0, 0), (10, 1)):
            targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
            predictions = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 0 + shift])
            writer.add_confusion_matrix(
                "eval/animals", predictions, targets, step, class_names=ANIMALS
            )
            writer.add_gradient_bars(
                "gradients/broken",
                {"embed": 0.5, "block.attn": float("nan"), "block.mlp": 2.0 + step, "head": 1e-4},
                step,
            )


@pytest.fixture(scope="module")
def demo_logdir(demo_runs, tmp_path_factory):
    # A copy: the extra tags must not leak into other tests' demo runs.
    logdir = tmp_path_factory.mktemp("panels") / "runs"
    shutil.copytree(demo_runs, logdir)
    write_extra_tags(logdir)
    return logdir


@pytest.fixture(scope="module")
def server(demo_logdir):
    with tensorboard_server(demo_logdir, "--load_fast=false") as tb:
        tb.wait_for_tags(["healthy", "vanishing"])
        yield tb


def open_tab(page, server, state=""):
    """Opens TensorBoard on the tab, with `state` hash entries appended."""
    page.goto(server.url + "/#torch_visualization" + state)
    frame = plugin_frame(page)
    frame.wait_for_selector(".card")
    return frame


def watch_errors(page):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def ready(frame, selector, timeout=30_000):
    """Scrolls the first match into view and waits until it is ready."""
    target = frame.locator(selector).first
    target.scroll_into_view_if_needed()
    frame.wait_for_selector(selector + '[data-state="ready"]', timeout=timeout)
    return target


def hover(page, locator, fx, fy):
    box = locator.bounding_box()
    page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def tooltip_text(frame):
    tip = frame.locator(".tooltip").first
    tip.wait_for()
    return tip.inner_text()


def shot(locator, path):
    locator.screenshot(path=str(path))
    print("screenshot:", path)
    return path


def images_differ(a, b):
    one = Image.open(io.BytesIO(a)).convert("RGB")
    two = Image.open(io.BytesIO(b)).convert("RGB")
    return one.size != two.size or ImageChops.difference(one, two).getbbox() is not None


def parent_state(page):
    """Our entries in TensorBoard's URL hash."""
    fragment = urllib.parse.urlsplit(page.url).fragment
    out = {}
    for part in fragment.split("&"):
        key, _, value = part.partition("=")
        key = urllib.parse.unquote(key)
        if key.startswith("p.torch_visualization."):
            out[key[len("p.torch_visualization."):]] = urllib.parse.unquote(value)
    return out


def test_compare_two_demo_runs(server, tmp_path):
    with chromium() as page:
        errors = watch_errors(page)
        frame = open_tab(page, server)
        frame.locator('.view-mode-button[data-mode="compare"]').click()
        assert frame.locator('.view-mode-button[data-mode="compare"]').get_attribute("aria-pressed") == "true"
        both = ["healthy", "vanishing"]

        # Bars: grouped, one colour per run, a legend naming both runs.
        bars = ready(frame, ".card[data-view=\"compare\"][data-kind=\"bars\"][data-tag=\"gradients/norm\"]")
        assert json.loads(bars.get_attribute("data-runs")) == both
        assert bars.locator(".run-legend .legend-name").all_inner_texts() == ["healthy", "vanishing"]
        canvas = bars.locator("canvas")
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + 52, box["y"] + box["height"] * 0.5)  # first group: 0.weight
        text = tooltip_text(frame)
        assert "0.weight" in text and "healthy" in text and "vanishing" in text, text
        bars.locator(".log-toggle").check()
        shot(bars, tmp_path / "compare-bars.png")

        # Heatmaps: side by side, one shared colour bar, a difference panel.
        first = ready(frame, ".card[data-view=\"compare\"][data-kind=\"heatmap\"][data-tag=\"weights/0.weight\"]")
        assert json.loads(first.get_attribute("data-runs")) == both
        assert first.locator(".compare-panel[data-run]").count() == 2
        assert first.locator(".colorbar").first.is_visible()
        diff = first.locator(".diff-panel")
        assert diff.is_visible()
        assert "healthy − vanishing" in diff.inner_text()
        hover(page, diff.locator("canvas"), 0.5, 0.5)
        text = tooltip_text(frame)
        assert "difference" in text and "healthy" in text, text
        first.locator(".diff-toggle").uncheck()
        assert not diff.is_visible()
        first.locator(".diff-toggle").check()
        shot(first, tmp_path / "compare-heatmaps.png")
        # Different original shapes: no difference, said why.
        second = ready(frame, ".card[data-view=\"compare\"][data-kind=\"heatmap\"][data-tag=\"weights/2.weight\"]")
        assert "shapes differ" in second.locator(".diff-note").inner_text()
        # A selected run that never logged the tag: an empty panel.
        only = ready(frame, ".card[data-view=\"compare\"][data-kind=\"heatmap\"][data-tag=\"weights/6.weight\"]")
        assert "no data for this run yet" in only.locator(".compare-panel.is-empty").inner_text()

        # Pies: one per run, side by side, with a class legend.
        pies = ready(frame, ".card[data-view=\"compare\"][data-kind=\"pie\"][data-tag=\"outputs/predicted\"]")
        assert pies.locator(".compare-panel canvas").count() == 2
        assert pies.locator(".compare-legend .legend-name").count() == 10
        shot(pies, tmp_path / "compare-pies.png")

        # The difference pair can be swapped; the URL keeps it.
        frame.locator(".diff-a").select_option("vanishing")
        frame.locator(".diff-b").select_option("healthy")
        frame.wait_for_function(
            "() => document.querySelector('.card[data-tag=\"weights/0.weight\"] .diff-panel')"
            ".textContent.includes('vanishing − healthy')"
        )
        page.wait_for_function("() => location.hash.includes('diff')")
        assert json.loads(parent_state(page)["diff"]) == ["vanishing", "healthy"]
        assert errors == []


def test_over_time_views_and_log_scale(server, tmp_path):
    with chromium() as page:
        errors = watch_errors(page)
        frame = open_tab(page, server, "&p.torch_visualization.view=overtime")
        assert frame.locator('.view-mode-button[data-mode="overtime"]').get_attribute("aria-pressed") == "true"
        notice = frame.locator(".page-notice").inner_text()
        assert "no over-time view" in notice, notice
        assert frame.locator('.card[data-kind="heatmap"]').count() == 0

        card = ready(frame, '.card[data-view="overtime"][data-kind="bars"][data-run="vanishing"][data-tag="gradients/norm"]')
        canvas = card.locator(".overtime-canvas")
        hover(page, canvas, 0.6, 0.1)
        text = tooltip_text(frame)
        assert "step" in text and re.search(r"\d", text), text
        assert re.search(r"\d+\.(weight|bias)", text), text
        before = canvas.screenshot()
        linear_min = card.locator(".colorbar-min").inner_text()
        card.locator(".log-toggle").check()
        frame.wait_for_function(
            "el => el.querySelector('.colorbar-title').textContent.includes('log')", arg=card.element_handle()
        )
        page.mouse.move(0, 0)
        after = canvas.screenshot()
        assert images_differ(before, after), "the log colour scale changed nothing"
        print("vanishing gradients/norm colour range:", linear_min, "..", card.locator(".colorbar-max").inner_text())
        shot(card, tmp_path / "overtime-bars-log.png")

        # The NaN layer is flagged: red badge, "NaN 2" over all steps.
        broken = ready(frame, '.card[data-view="overtime"][data-tag="gradients/broken"]')
        assert broken.locator(".nonfinite-badge").is_visible()
        assert "NaN 2" in broken.locator(".card-stats").inner_text()
        assert "NaN / Inf" in broken.locator(".colorbar-keys").inner_text()
        shot(broken, tmp_path / "overtime-broken.png")

        pie = ready(frame, '.card[data-view="overtime"][data-kind="pie"][data-run="healthy"][data-tag="outputs/predicted"]')
        assert pie.locator(".stacked-legend .legend-name").count() == 10
        hover(page, pie.locator(".stacked-canvas"), 0.5, 0.5)
        text = tooltip_text(frame)
        assert text.startswith("step") and "%" in text, text
        shot(pie, tmp_path / "overtime-pie.png")
        assert errors == []


def test_confusion_matrix_names_and_precision_recall(server, tmp_path):
    with chromium() as page:
        errors = watch_errors(page)
        frame = open_tab(page, server, "&p.torch_visualization.filter=eval")
        card = ready(frame, '.card[data-kind="confusion"][data-run="healthy"][data-tag="eval/animals"]')
        canvas = card.locator(".confusion-canvas")
        label = canvas.get_attribute("aria-label")
        assert "cat, dog, bird" in label, label
        # At step 10: cat 3/4 right, dog 2/3, bird 2/3; one bird called dog.
        assert card.get_attribute("data-step") == "10"
        box = canvas.bounding_box()
        # The cell (true dog, predicted dog) is in the middle of the grid.
        hover(page, canvas, 0.5, 0.45)
        text = tooltip_text(frame)
        assert "true dog" in text and "predicted dog" in text, text
        assert "precision (dog)" in text and "recall (dog)" in text, text
        assert "50.0%" in text and "66.7%" in text, text  # precision 2/4, recall 2/3
        shot(card, tmp_path / "confusion-counts.png")
        card.locator(".normalize-toggle").check()
        frame.wait_for_function(
            "el => el.querySelector('.colorbar-title').textContent.includes('share')", arg=card.element_handle()
        )
        hover(page, canvas, 0.5, 0.45)
        assert "66.7%" in tooltip_text(frame)
        shot(card, tmp_path / "confusion-normalised.png")
        assert box["width"] > 100
        assert errors == []


def test_bars_sorting_and_nonfinite_flags(server, tmp_path):
    with chromium() as page:
        errors = watch_errors(page)
        frame = open_tab(page, server, "&p.torch_visualization.filter=broken")
        card = ready(frame, '.card[data-kind="bars"][data-tag="gradients/broken"]')
        stats = card.locator(".card-stats").inner_text()
        assert stats == "min 1e-4 · max 12 · NaN 1", stats
        assert card.locator(".nonfinite-badge").inner_text() == "1 non-finite"
        assert "NaN / Inf" in card.locator(".bars-legend").inner_text()
        canvas = card.locator("canvas")
        names = []
        for select in ("model", "desc", "asc"):
            card.locator(".bars-sort").select_option(select)
            seen = []
            for k in range(4):
                hover(page, canvas, 0.16 + 0.2 * k + 0.03, 0.5)
                seen.append(tooltip_text(frame).splitlines()[0])
            names.append(seen)
        assert names[0] == ["embed", "block.attn", "block.mlp", "head"], names
        assert names[1] == ["block.attn", "block.mlp", "embed", "head"], names  # NaN first
        assert names[2] == ["block.attn", "head", "embed", "block.mlp"], names
        shot(card, tmp_path / "bars-sorted.png")
        assert errors == []


def test_export_csv_and_png(server, tmp_path):
    series = server.get_json(PLUGIN + "/series?run=healthy&tag=gradients/norm")
    with chromium() as page:
        errors = watch_errors(page)
        frame = open_tab(page, server, "&p.torch_visualization.filter=gradients/norm|eval/animals")
        card = ready(frame, '.card[data-kind="bars"][data-run="healthy"][data-tag="gradients/norm"]')
        with page.expect_download() as info:
            card.locator(".export-csv").click()
        download = info.value
        assert download.suggested_filename == "healthy_gradients_norm.csv"
        path = tmp_path / download.suggested_filename
        download.save_as(str(path))
        rows = list(csv.reader(io.StringIO(path.read_text())))
        assert rows[0] == CSV_COLUMNS
        body = rows[1:]
        layers = series["labels"]
        assert len(body) == len(series["steps"]) * len(layers)
        assert {r[0] for r in body} == {"healthy"} and {r[2] for r in body} == {"bars"}
        assert sorted({int(r[3]) for r in body}) == series["steps"]
        for r in body:
            i = series["steps"].index(int(r[3]))
            assert r[6] == layers[int(r[5])]
            assert math.isclose(float(r[8]), series["values"][i][int(r[5])], rel_tol=1e-6)

        with page.expect_download() as info:
            card.locator(".export-png").click()
        png = tmp_path / info.value.suggested_filename
        info.value.save_as(str(png))
        print("screenshot:", png)
        assert png.name.startswith("healthy_gradients_norm_step")
        image = Image.open(png)
        assert image.format == "PNG" and image.width >= 700 and image.height >= 500, image.size

        # The confusion card's PNG (names on the axes) and a compare card's CSV.
        confusion = ready(frame, '.card[data-kind="confusion"][data-tag="eval/animals"]')
        with page.expect_download() as info:
            confusion.locator(".export-png").click()
        png = tmp_path / ("confusion-" + info.value.suggested_filename)
        info.value.save_as(str(png))
        print("screenshot:", png)

        frame.locator('.view-mode-button[data-mode="compare"]').click()
        compare = ready(frame, '.card[data-view="compare"][data-tag="gradients/norm"]')
        with page.expect_download() as info:
            compare.locator(".export-csv").click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(str(path))
        rows = list(csv.reader(io.StringIO(path.read_text())))
        assert rows[0] == CSV_COLUMNS and rows.count(CSV_COLUMNS) == 1
        assert {r[0] for r in rows[1:]} == {"healthy", "vanishing"}
        with page.expect_download() as info:
            compare.locator(".export-png").click()
        png = tmp_path / ("compare-" + info.value.suggested_filename)
        info.value.save_as(str(png))
        print("screenshot:", png)
        assert errors == []


def test_state_survives_a_page_reload(server, tmp_path):
    with chromium() as page:
        errors = watch_errors(page)
        frame = open_tab(page, server)
        frame.locator('.run-toggle[data-run="vanishing"]').uncheck()
        frame.locator(".tag-filter").fill("gradients|outputs")
        frame.locator(".tag-filter").press("Enter")
        frame.locator('.view-mode-button[data-mode="overtime"]').click()
        frame.locator(".link-steps").check()
        page.wait_for_function("() => location.hash.includes('link')")
        state = parent_state(page)
        assert state == {
            "runs": '["healthy"]', "filter": "gradients|outputs", "view": "overtime", "link": "1",
        }, state
        assert page.url.split("#")[1].startswith("torch_visualization&")

        page.reload()
        frame = plugin_frame(page)
        frame.wait_for_selector('.card[data-view="overtime"]')
        assert frame.locator('.run-toggle[data-run="vanishing"]').is_checked() is False
        assert frame.locator('.run-toggle[data-run="healthy"]').is_checked()
        assert frame.locator(".tag-filter").input_value() == "gradients|outputs"
        assert frame.locator('.view-mode-button[data-mode="overtime"]').get_attribute("aria-pressed") == "true"
        assert frame.locator(".link-steps").is_checked()
        runs = set(frame.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.run)"))
        tags = set(frame.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.tag)"))
        assert runs == {"healthy"}
        # The over-time view shows the bars and pie tags the filter keeps.
        listed = server.get_json(PLUGIN + "/tags")["runs"]["healthy"]
        expected = {
            tag for tag, info in listed.items()
            if re.search("gradients|outputs", tag) and info["kind"] in ("bars", "pie")
        }
        assert {"gradients/norm", "gradients/broken", "outputs/classes", "outputs/predicted"} <= expected
        assert tags == expected
        shot(frame.locator(".tv-app"), tmp_path / "state-after-reload.png")
        assert errors == []


def test_error_banner_shows_the_server_message(server, tmp_path):
    with chromium() as page:
        errors = watch_errors(page)
        message = "step 12345 of run 'healthy' tag 'features/pca' not found"
        page.route(
            re.compile(r".*/data/plugin/torch_visualization/data\?.*features%2Fpca.*"),
            lambda route: route.fulfill(status=404, body=message, content_type="text/plain"),
        )
        frame = open_tab(page, server, "&p.torch_visualization.filter=features")
        banner = frame.locator(".error-banner")
        banner.wait_for()
        assert message in banner.inner_text()
        card = frame.locator('.card[data-kind="scatter"]').first
        frame.wait_for_selector('.card[data-kind="scatter"][data-state="error"]')
        assert message in card.locator(".card-message").inner_text()
        assert card.locator(".retry-button").is_visible()
        shot(frame.locator(".tv-app"), tmp_path / "error-banner.png")
        # Dismissed by keyboard: the button is reachable and works.
        frame.locator(".error-dismiss").focus()
        page.keyboard.press("Enter")
        assert banner.is_hidden()
        # The server answers again: Retry draws the card.
        page.unroute(re.compile(r".*/data/plugin/torch_visualization/data\?.*features%2Fpca.*"))
        card.locator(".retry-button").click()
        frame.wait_for_selector('.card[data-kind="scatter"][data-state="ready"]')
        assert errors == []


def test_keyboard_reaches_the_controls_with_visible_focus(server):
    with chromium() as page:
        frame = open_tab(page, server)
        frame.locator(".tag-filter").focus()
        reached = []
        for _ in range(8):
            page.keyboard.press("Tab")
            reached.append(frame.evaluate(
                "() => { const a = document.activeElement; return [a.className, a.dataset.mode || '',"
                " getComputedStyle(a).outlineStyle, getComputedStyle(a).outlineWidth]; }"
            ))
            if reached[-1][1] == "overtime":
                break
        assert reached[-1][1] == "overtime", reached
        assert reached[-1][2] != "none" and reached[-1][3] != "0px", reached[-1]
        page.keyboard.press("Enter")
        frame.wait_for_selector('.card[data-view="overtime"]')
        # Card controls are reachable too: the first card's PNG button.
        assert frame.locator(".card .export-png").first.evaluate("b => b.tabIndex") == 0


def test_linked_step_sliders_move_together(server):
    with chromium() as page:
        errors = watch_errors(page)
        frame = open_tab(page, server, "&p.torch_visualization.filter=weights/0|weights/2|gradients/norm")
        frame.locator(".link-steps").check()
        for selector in (
            '.card[data-tag="weights/0.weight"][data-run="healthy"]',
            '.card[data-tag="weights/0.weight"][data-run="vanishing"]',
        ):
            ready(frame, selector)
        slider = frame.locator('.card[data-tag="weights/0.weight"][data-run="healthy"] .step-slider')
        slider.focus()
        slider.press("Home")
        frame.wait_for_function(
            "() => [...document.querySelectorAll('.card[data-tag=\"weights/0.weight\"]')]"
            ".every(c => c.dataset.step === '0' && c.dataset.state === 'ready')"
        )
        # A card that loads later joins the linked step too.
        late = frame.locator('.card[data-tag="gradients/norm"][data-run="vanishing"]')
        late.scroll_into_view_if_needed()
        frame.wait_for_function(
            "el => el.dataset.step === '0' && el.dataset.state === 'ready'", arg=late.element_handle()
        )
        assert errors == []


def test_tensorboard_reload_refreshes_and_keeps_state(demo_logdir, tmp_path):
    """TB's reload button reaches the tab: new steps appear, the rest stays."""
    logdir = tmp_path / "live"
    shutil.copytree(demo_logdir, logdir)
    with tensorboard_server(logdir, "--load_fast=false", "--reload_interval=1") as server, chromium() as page:
        server.wait_for_tags(["healthy", "vanishing"])
        errors = watch_errors(page)
        frame = open_tab(page, server)
        frame.locator('.run-toggle[data-run="vanishing"]').uncheck()
        heat = ready(frame, '.card[data-kind="heatmap"][data-run="healthy"][data-tag="weights/0.weight"]')
        slider = heat.locator(".step-slider")
        slider.focus()
        slider.press("Home")
        frame.wait_for_function("el => el.dataset.step === '0' && el.dataset.state === 'ready'", arg=heat.element_handle())
        bars = ready(frame, '.card[data-kind="bars"][data-run="healthy"][data-tag="gradients/norm"]')
        last_step = int(bars.get_attribute("data-step"))
        # The scatter card (last on the page) is loaded, then left far below
        # while the bars card is in view.
        scatter = ready(frame, '.card[data-kind="scatter"][data-run="healthy"]')
        # A short window, so that the scatter card lies beyond the 300 px
        # margin within which a reload refreshes cards (index.js refreshCards).
        page.set_viewport_size({"width": 1400, "height": 700})
        bars.evaluate("el => el.scrollIntoView({block: 'start'})")
        scroll_before = frame.evaluate("() => window.scrollY")
        assert scroll_before > 0
        below = scatter.evaluate("el => el.getBoundingClientRect().top - window.innerHeight")
        assert below > 300, below

        # New steps on disk; wait until the server holds them.
        from torch_visualization import SummaryWriter

        new_step = last_step + 100
        # Same layer names as the tag's first record (labels are frozen).
        layers = server.get_json(PLUGIN + "/tags")["runs"]["healthy"]["gradients/norm"]["labels"]
        with SummaryWriter(str(logdir / "healthy")) as writer:
            writer.add_gradient_bars("gradients/norm", {name: 1.0 + i for i, name in enumerate(layers)}, new_step)
            writer.add_scatter(
                "features/pca", np.random.default_rng(0).normal(size=(20, 2)), new_step,
                labels=np.arange(20) % 10, class_names=[str(d) for d in range(10)],
            )
        deadline = time.monotonic() + 30
        while new_step not in server.get_json(PLUGIN + "/data?run=healthy&tag=gradients/norm")["steps"]:
            assert time.monotonic() < deadline, "the server never picked up the new step"
            time.sleep(0.5)

        reloads = int(frame.locator(".tv-app").get_attribute("data-reloads"))
        scatter_requests = []
        page.on("request", lambda r: scatter_requests.append(r.url) if "features%2Fpca" in r.url else None)
        page.locator("button.reload-button").first.click()
        frame.wait_for_function(
            "n => Number(document.querySelector('.tv-app').dataset.reloads) > n", arg=reloads
        )
        frame.wait_for_function(
            "([el, s]) => el.dataset.step === String(s) && el.dataset.state === 'ready'",
            arg=[bars.element_handle(), new_step],
        )
        assert heat.get_attribute("data-step") == "0"
        assert heat.locator(".step-value").inner_text() == "0"
        assert frame.locator('.run-toggle[data-run="vanishing"]').is_checked() is False
        assert frame.locator('.card[data-run="vanishing"]').count() == 0
        scroll_after = frame.evaluate("() => window.scrollY")
        assert abs(scroll_after - scroll_before) <= 2, (scroll_before, scroll_after)
        page.screenshot(path=str(tmp_path / "after-tb-reload.png"))
        print("screenshot:", tmp_path / "after-tb-reload.png")
        # Cards far off screen are not refetched on every reload, but as
        # soon as they scroll into view, with the new step.
        assert scatter_requests == [], scatter_requests
        scatter.scroll_into_view_if_needed()
        frame.wait_for_function(
            "([el, s]) => el.dataset.step === String(s) && el.dataset.state === 'ready'",
            arg=[scatter.element_handle(), new_step],
        )
        assert len(scatter_requests) == 1, scatter_requests
        assert errors == []


def test_two_hundred_cards_over_five_runs_performance(tmp_path):
    """200 cards over 5 runs: records time-to-interactive and long tasks."""
    import torch

    from torch_visualization import SummaryWriter

    logdir = tmp_path / "many"
    torch.manual_seed(0)
    for r in range(5):
        with SummaryWriter(str(logdir / ("run%d" % r))) as writer:
            for i in range(40):
                for step in (0, 1):
                    kind = i % 4
                    tag = "t%02d" % i
                    if kind == 0:
                        writer.add_weight_heatmap("weights/" + tag, torch.randn(32, 32), step)
                    elif kind == 1:
                        writer.add_gradient_bars("grads/" + tag, {"l%d" % k: float(k + 1) for k in range(12)}, step)
                    elif kind == 2:
                        writer.add_class_pie("outputs/" + tag, np.arange(1.0, 11.0), step)
                    else:
                        writer.add_scatter("features/" + tag, torch.randn(200, 2), step, labels=torch.arange(200) % 10)
    with tensorboard_server(logdir, "--load_fast=false") as server:
        server.wait_for_tags(["run%d" % r for r in range(5)])
        with chromium() as page:
            errors = watch_errors(page)
            page.goto(server.url + "/#torch_visualization")
            frame = plugin_frame(page)
            frame.wait_for_selector(".card")
            # Interactive: all 200 cards built and the first row drawn, in ms
            # since TensorBoard's page started navigating (the frame can read
            # its parent's clock: same origin).
            interactive = frame.wait_for_function(
                "() => document.querySelectorAll('.card').length === 200 && "
                "[...document.querySelectorAll('.card')].slice(0, 3).every(c => c.dataset.state === 'ready') && "
                "[performance.timeOrigin + performance.now() - window.parent.performance.timeOrigin, performance.now()]"
            ).json_value()
            figures = frame.evaluate(
                """async () => {
                  // Does the page answer input now? Time one filter change.
                  const input = document.querySelector('.tag-filter');
                  const t0 = performance.now();
                  input.value = 'grads';
                  input.dispatchEvent(new Event('input'));
                  input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
                  const filtered = document.querySelectorAll('.card').length;
                  const filterMs = performance.now() - t0;
                  input.value = '';
                  input.dispatchEvent(new Event('input'));
                  input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
                  await new Promise((r) => setTimeout(r, 300));
                  const longTasks = [];
                  const observer = new PerformanceObserver((list) => {
                    for (const e of list.getEntries()) longTasks.push(e.duration);
                  });
                  observer.observe({entryTypes: ['longtask']});
                  const frames = [];
                  let last = performance.now();
                  // Cards grow as they load: scroll until the real bottom.
                  for (let y = 0; y < 200000; y += 250) {
                    if (y > document.documentElement.scrollHeight - innerHeight + 250) break;
                    window.scrollTo(0, y);
                    await new Promise((r) => requestAnimationFrame(r));
                    const now = performance.now();
                    frames.push(now - last);
                    last = now;
                  }
                  const count = () => [...document.querySelectorAll('.card')].filter((c) => c.dataset.state === 'ready').length;
                  for (let i = 0; i < 100 && count() < 200; i++) await new Promise((r) => setTimeout(r, 200));
                  observer.disconnect();
                  const ready = count();
                  frames.sort((a, b) => a - b);
                  const states = {};
                  for (const c of document.querySelectorAll('.card')) states[c.dataset.state] = (states[c.dataset.state] || 0) + 1;
                  return {
                    states, filterMs, filtered, longTasks, ready,
                    cards: document.querySelectorAll('.card').length,
                    frameMedian: frames[Math.floor(frames.length / 2)],
                    frameMax: frames[frames.length - 1], scrollFrames: frames.length,
                  };
                }"""
            )
            page.screenshot(path=str(tmp_path / "two-hundred-cards.png"))
            print("screenshot:", tmp_path / "two-hundred-cards.png")
    print(
        "\n200 cards / 5 runs: interactive %.0f ms after TensorBoard's navigation start, %.0f ms after the "
        "tab's frame started (cards built, first row drawn); "
        "filter to %d cards in %.0f ms; scrolling %d frames, median %.0f ms, worst %.0f ms; "
        "%d long tasks while scrolling and loading (total %.0f ms, worst %.0f ms); %d cards drawn after scrolling"
        % (
            interactive[0], interactive[1], figures["filtered"], figures["filterMs"], figures["scrollFrames"],
            figures["frameMedian"], figures["frameMax"], len(figures["longTasks"]),
            sum(figures["longTasks"]), max(figures["longTasks"] or [0]), figures["ready"],
        )
    )
    assert figures["cards"] == 200
    assert figures["filtered"] == 50
    print("card states after scrolling:", figures["states"])
    assert figures["ready"] == 200  # every card loaded once scrolled past
    assert errors == []


def test_hostile_names_stay_text_in_compare_and_over_time_views(tmp_path):
    """Run, tag, layer and class names with markup: shown verbatim, never run."""
    import torch

    from torch_visualization import SummaryWriter

    img = '<img src=x onerror="window.__pwned=1">'
    script = '"><script>window.__pwned=1</script>'
    runs = [img, script + " & #hash?x=1"]
    names = [img, script, "<b>bold</b>"]
    logdir = tmp_path / "hostile"
    for run in runs:
        with SummaryWriter(str(logdir / run)) as writer:
            for step in (0, 1):
                writer.add_gradient_bars(img + "/bars", {n: 1.0 + i for i, n in enumerate(names)}, step)
                writer.add_class_pie(script + "/pie", np.array([1.0, 2.0, 3.0]), step, class_names=names)
                writer.add_weight_heatmap(img + "/w", torch.randn(4, 5), step)
    with tensorboard_server(logdir, "--load_fast=false") as server, chromium() as page:
        server.wait_for_tags(runs)
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors = watch_errors(page)
        for view in ("compare", "overtime"):
            page.goto("about:blank")  # a hash change alone would not reload the tab
            page.goto(server.url + "/#torch_visualization&p.torch_visualization.view=" + view)
            frame = plugin_frame(page)
            frame.wait_for_selector(".card")
            for card in frame.locator(".card").all():
                card.scroll_into_view_if_needed()
                frame.wait_for_function("el => el.dataset.state === 'ready'", arg=card.element_handle())
            assert sorted(frame.locator(".run-name").all_inner_texts()) == sorted(runs)
            if view == "compare":
                legend = frame.locator('.card[data-kind="bars"] .run-legend .legend-name').all_inner_texts()
                assert sorted(legend) == sorted(runs)
                assert sorted(frame.locator(".diff-a option").all_inner_texts()) == sorted(runs)
                pies = frame.locator('.card[data-kind="pie"] .compare-legend .legend-name').all_inner_texts()
                assert pies == names
            else:
                stacked = frame.locator('.card[data-kind="pie"] .stacked-legend .legend-name').first
                assert stacked.inner_text() == img
            assert set(frame.locator(".card-title").all_inner_texts()) <= {img + "/bars", script + "/pie", img + "/w"}
            found = frame.evaluate(
                "() => ({pwned: typeof window.__pwned, parentPwned: typeof window.parent.__pwned,"
                " markup: document.querySelectorAll('img, script:not([src]), b, svg, iframe').length})"
            )
            assert found == {"pwned": "undefined", "parentPwned": "undefined", "markup": 0}, found
            page.screenshot(path=str(tmp_path / ("hostile-%s.png" % view)))
            print("screenshot:", tmp_path / ("hostile-%s.png" % view))
        assert dialogs == [] and errors == []
