"""The Findings strip in real headless Chromium, served by a real `tensorboard`.

On the demo's two runs (trained once per session by conftest): the strip
names the `vanishing` run's vanishing gradients and class collapse and says
that `healthy` has no problems; a click on a finding lands on its card at the
finding's step with its layers outlined (both loaders). The strip follows
the run selection and TensorBoard's reload; an over-time finding opens the
over-time view with the layer's row outlined, and a finding about a loss
scalar (no card in this tab) is shown but not clickable.

What the strip should say is read from the real `/findings` route, never
hard-coded: the test checks that the tab shows the route's findings and
opens them where their `view` says. Screenshots land in each test's tmp dir.
"""

from __future__ import annotations

import io
import json
import re
import time
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from browser import chromium, plugin_frame
from conftest import tensorboard_server

PLUGIN = "/data/plugin/torch_visualization"
# views/axes.js FOCUS_COLOR: the outline of a finding's bars and rows.
FOCUS_RGB = (0xE6, 0x51, 0x00)


def open_tab(page, server):
    page.goto(server.url + "/#torch_visualization")
    frame = plugin_frame(page)
    frame.wait_for_selector(".findings")
    return frame


def watch_errors(page):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def route_findings(server, run):
    """The route's findings of `run`, keyed by kind."""
    body = server.get_json(PLUGIN + "/findings?" + urllib.parse.urlencode({"run": run}))
    return {f["kind"]: f for f in body["runs"][run]}, body["checks"]


def focus_pixels(png_bytes):
    """How many pixels are (nearly) the focus outline colour."""
    pixels = np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.array(FOCUS_RGB)) < 24).all(axis=-1).sum())


def in_viewport(frame, locator):
    box = locator.evaluate("el => { const r = el.getBoundingClientRect(); return [r.top, r.bottom]; }")
    height = frame.evaluate("() => window.innerHeight")
    return box[0] < height and box[1] > 0


def finding_button(frame, run, kind):
    return frame.locator('.findings-run[data-run="%s"] .finding[data-kind="%s"]' % (run, kind)).first


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_strip_names_findings_and_a_click_opens_the_card(demo_runs, tmp_path, load_fast):
    with tensorboard_server(demo_runs, "--load_fast=%s" % load_fast) as server:
        server.wait_for_tags(["healthy", "vanishing"])
        expected, checks = route_findings(server, "vanishing")
        assert {"vanishing_gradients", "class_collapse"} <= set(expected), expected
        assert route_findings(server, "healthy")[0] == {}
        with chromium() as page:
            errors = watch_errors(page)
            requests = []
            page.on("request", lambda r: requests.append(r.url) if "/findings?" in r.url else None)
            frame = open_tab(page, server)
            strip = frame.locator(".findings")
            frame.wait_for_selector('.findings[data-status="found"]')
            frame.wait_for_selector('.findings-run[data-run="healthy"][data-status="ready"]')
            # One request per run, each answered on its own.
            runs = sorted(urllib.parse.parse_qs(urllib.parse.urlsplit(u).query)["run"][0] for u in requests)
            assert runs == ["healthy", "vanishing"], requests

            # The first screen: the strip sits above the cards, in view.
            assert in_viewport(frame, strip)
            first_card_top = frame.locator(".card").first.evaluate("el => el.getBoundingClientRect().top")
            assert strip.evaluate("el => el.getBoundingClientRect().bottom") <= first_card_top
            healthy = frame.locator('.findings-run[data-run="healthy"]')
            assert "no problems found" in healthy.inner_text()
            assert healthy.locator(".finding").count() == 0
            shown = frame.locator('.findings-run[data-run="vanishing"] .finding')
            kinds = shown.evaluate_all("els => els.map((e) => e.dataset.kind)")
            assert sorted(kinds) == sorted(expected), kinds
            # Errors first.
            severities = shown.evaluate_all("els => els.map((e) => e.dataset.severity)")
            assert severities == sorted(severities, key=lambda s: s != "error"), severities
            vanishing = expected["vanishing_gradients"]
            item = finding_button(frame, "vanishing", "vanishing_gradients")
            text = item.inner_text()
            assert "Vanishing gradients" in text and vanishing["labels"][0] in text, text
            assert "step %d" % vanishing["first_step"] in text, text
            assert "Class collapse" in finding_button(frame, "vanishing", "class_collapse").inner_text()
            assert "vanishing gradients" in strip.locator(".findings-checked").inner_text()
            page.screenshot(path=str(tmp_path / ("strip-%s.png" % load_fast)))
            print("screenshot:", tmp_path / ("strip-%s.png" % load_fast))

            # A click: the gradients card of that run, at the finding's step,
            # its layers outlined, on screen.
            step = vanishing["view"]["step"]
            tag = vanishing["view"]["tag"]
            item.click()
            selector = '.card[data-view="steps"][data-run="vanishing"][data-tag="%s"]' % tag
            card = frame.locator(selector)
            frame.wait_for_function(
                "([el, s]) => el.classList.contains('is-focused') && el.dataset.step === String(s)"
                " && el.dataset.state === 'ready' && el.dataset.highlight !== undefined",
                arg=[card.element_handle(), step],
            )
            assert card.locator(".step-value").inner_text() == str(step)
            assert card.locator(".step-slider").input_value() == str(step)
            highlight = json.loads(card.get_attribute("data-highlight"))
            assert highlight and highlight[0] == vanishing["labels"][0], highlight
            assert set(highlight) <= set(vanishing["labels"])
            assert card.locator(".log-toggle").is_checked()
            assert vanishing["message"] in card.locator(".card-focus").inner_text()
            assert frame.locator(".card.is-focused").count() == 1
            assert in_viewport(frame, card)
            assert focus_pixels(card.locator("canvas").first.screenshot()) > 20
            card.screenshot(path=str(tmp_path / ("opened-%s.png" % load_fast)))
            print("screenshot:", tmp_path / ("opened-%s.png" % load_fast))

            # Another finding moves the focus; the first card is cleared.
            collapse = expected["class_collapse"]
            finding_button(frame, "vanishing", "class_collapse").click()
            other = frame.locator(
                '.card[data-view="steps"][data-run="vanishing"][data-tag="%s"]' % collapse["view"]["tag"]
            )
            frame.wait_for_function(
                "([el, s]) => el.classList.contains('is-focused') && el.dataset.step === String(s)"
                " && el.dataset.state === 'ready' && el.dataset.highlight !== undefined",
                arg=[other.element_handle(), collapse["view"]["step"]],
            )
            assert json.loads(other.get_attribute("data-highlight")) == collapse["labels"][:1]
            assert frame.locator(".card.is-focused").count() == 1
            assert card.get_attribute("data-highlight") is None
            assert focus_pixels(card.locator("canvas").first.screenshot()) == 0
            # The × on the card clears its highlight.
            other.locator(".card-focus-clear").click()
            assert frame.locator(".card.is-focused").count() == 0
            assert errors == []


def test_strip_follows_the_run_selection(demo_runs, tmp_path):
    """Each run shows as it arrives; a deselected run's answer is dropped."""
    with tensorboard_server(demo_runs, "--load_fast=false") as server:
        server.wait_for_tags(["healthy", "vanishing"])
        _, checks = route_findings(server, "healthy")
        with chromium() as page:
            errors = watch_errors(page)
            # The real route's first answer for `vanishing` is held back
            # until the run has been deselected.
            held = []

            def hold(route):
                if "run=vanishing" in route.request.url and not held:
                    held.append(route)
                else:
                    route.continue_()

            page.route(re.compile(r".*/findings\?.*"), hold)
            ended = []  # how the held request ended: "failed" (aborted) or "finished"
            for event in ("requestfailed", "requestfinished"):
                page.on(event, lambda r, e=event: ended.append(e[7:]) if held and r == held[0].request else None)
            frame = open_tab(page, server)
            strip = frame.locator(".findings")
            # healthy is shown while vanishing is still being checked.
            frame.wait_for_selector('.findings-run[data-run="healthy"][data-status="ready"]')
            assert held, "the vanishing request never came"
            assert frame.locator('.findings-run[data-run="vanishing"]').get_attribute("data-status") == "loading"
            assert "checking" in strip.locator(".findings-headline").inner_text().lower()

            frame.locator('.run-toggle[data-run="vanishing"]').uncheck()
            frame.wait_for_selector('.findings[data-status="clean"]')
            try:
                held[0].continue_()
            except Exception:  # noqa: BLE001 - the tab aborted it: nothing to answer
                pass
            deadline = time.monotonic() + 10
            while not ended:
                assert time.monotonic() < deadline, "the held request never ended"
                frame.wait_for_timeout(100)
            frame.wait_for_timeout(200)  # a late answer would render in the next task
            assert strip.get_attribute("data-status") == "clean", ended
            headline = strip.locator(".findings-headline").inner_text()
            assert headline.startswith("No problems found in healthy: checked "), headline
            assert "vanishing gradients" in headline and "class collapse" in headline, headline
            assert len(checks) >= 8
            assert frame.locator('.findings-run[data-run="vanishing"]').count() == 0
            assert frame.locator(".finding").count() == 0
            page.screenshot(path=str(tmp_path / "clean.png"))
            print("screenshot:", tmp_path / "clean.png")

            frame.locator('.run-toggle[data-run="healthy"]').uncheck()
            frame.wait_for_selector('.findings[data-status="none"]', state="attached")
            assert strip.is_hidden()

            frame.locator('.run-toggle[data-run="vanishing"]').check()
            frame.wait_for_selector('.findings-run[data-run="vanishing"] .finding[data-kind="vanishing_gradients"]')
            assert frame.locator('.findings-run[data-run="healthy"]').count() == 0
            assert errors == []


def write_frozen_run(logdir, steps, frozen_from):
    """A run whose `fc2.weight` gets gradients but stops changing at `frozen_from`,
    and whose loss becomes NaN at step 40 when it is logged."""
    from torch_visualization import SummaryWriter

    with SummaryWriter(str(logdir)) as writer:
        for step in steps:
            writer.add_gradient_bars("gradients/norm", {"fc1.weight": 0.5, "fc1.bias": 0.2, "fc2.weight": 0.3}, step)
            ratio = 0.0 if step >= frozen_from else 2e-3
            writer.add_gradient_bars("updates/ratio", {"fc1.weight": 1e-3, "fc1.bias": 2e-3, "fc2.weight": ratio}, step)
            writer.add_scalar("loss", float("nan") if step >= 40 else 1.0 / (step + 1), step)


def test_over_time_finding_and_tensorboard_reload(tmp_path):
    """Steps 0-20 are healthy; then fc2.weight freezes and the loss turns NaN.

    The strip says nothing is wrong, TensorBoard reloads, the strip shows the
    frozen parameter (opening the over-time view with its row outlined) and
    the loss (not a chart of this tab: not clickable).
    """
    logdir = tmp_path / "logs"
    write_frozen_run(logdir / "run", range(0, 30, 10), frozen_from=30)
    with tensorboard_server(logdir, "--load_fast=false", "--reload_interval=1") as server, chromium() as page:
        server.wait_for_tags(["run"])
        assert route_findings(server, "run")[0] == {}
        errors = watch_errors(page)
        frame = open_tab(page, server)
        frame.wait_for_selector('.findings[data-status="clean"]')

        write_frozen_run(logdir / "run", range(30, 60, 10), frozen_from=30)
        deadline = time.monotonic() + 30
        while "frozen_parameters" not in route_findings(server, "run")[0]:
            assert time.monotonic() < deadline, "the server never picked up the new steps"
            time.sleep(0.5)
        expected, _ = route_findings(server, "run")
        assert expected["frozen_parameters"]["view"].get("view") == "overtime"

        page.locator("button.reload-button").first.click()
        frame.wait_for_selector('.findings[data-status="found"]')
        frozen = finding_button(frame, "run", "frozen_parameters")
        assert frozen.evaluate("el => el.tagName") == "BUTTON"
        loss = finding_button(frame, "run", "loss_divergence")
        assert loss.evaluate("el => el.tagName") == "DIV"
        assert "SCALARS" in loss.inner_text()
        # Errors (the NaN loss) before warnings.
        kinds = frame.locator(".finding").evaluate_all("els => els.map((e) => e.dataset.kind)")
        assert kinds.index("loss_divergence") < kinds.index("frozen_parameters"), kinds

        frozen.click()
        card = frame.locator('.card[data-view="overtime"][data-run="run"][data-tag="updates/ratio"]')
        frame.wait_for_function(
            "el => el.classList.contains('is-focused') && el.dataset.state === 'ready'"
            " && el.dataset.highlight !== undefined",
            arg=card.element_handle(),
        )
        assert frame.locator('.view-mode-button[data-mode="overtime"]').get_attribute("aria-pressed") == "true"
        assert json.loads(card.get_attribute("data-highlight")) == expected["frozen_parameters"]["labels"]
        assert focus_pixels(card.locator("canvas").first.screenshot()) > 20
        page.screenshot(path=str(tmp_path / "overtime.png"))
        print("screenshot:", tmp_path / "overtime.png")
        assert errors == []


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_cards_say_when_tensorboard_sampled_their_steps(tmp_path, load_fast):
    """30 logged steps, 10 kept: the card says so and names the flag."""
    from torch_visualization import SummaryWriter

    logdir = tmp_path / "logs"
    with SummaryWriter(str(logdir / "run")) as writer:
        for step in range(0, 300, 10):
            writer.add_gradient_bars("gradients/norm", {"fc1.weight": 0.5, "fc2.weight": 0.3 + step}, step)
        for step in range(0, 50, 10):
            writer.add_gradient_bars("gradients/few", {"fc1.weight": 0.5}, step)
    flags = ("--load_fast=%s" % load_fast, "--samples_per_plugin", "torch_visualization=10")
    with tensorboard_server(logdir, *flags) as server, chromium() as page:
        server.wait_for_tags(["run"])
        data = server.get_json(PLUGIN + "/data?run=run&tag=gradients/norm")
        assert data["sampled"] is True and data["sample_limit"] == 10 and len(data["steps"]) == 10
        errors = watch_errors(page)
        frame = open_tab(page, server)
        card = frame.locator('.card[data-view="steps"][data-tag="gradients/norm"]')
        frame.wait_for_selector('.card[data-view="steps"][data-tag="gradients/norm"][data-state="ready"]')
        note = card.locator(".sample-note")
        assert note.is_visible()
        text = note.inner_text()
        assert "kept a sample of 10 steps" in text, text
        suggested = int(re.search(r"--samples_per_plugin torch_visualization=(\d+)", text).group(1))
        assert suggested >= 30, text
        few = frame.locator('.card[data-view="steps"][data-tag="gradients/few"]')
        frame.wait_for_selector('.card[data-view="steps"][data-tag="gradients/few"][data-state="ready"]')
        assert few.locator(".sample-note").is_hidden()
        card.screenshot(path=str(tmp_path / ("sampled-%s.png" % load_fast)))
        print("screenshot:", tmp_path / ("sampled-%s.png" % load_fast))

        frame.locator('.view-mode-button[data-mode="overtime"]').click()
        frame.wait_for_selector('.card[data-view="overtime"][data-tag="gradients/norm"][data-state="ready"]')
        over = frame.locator('.card[data-view="overtime"][data-tag="gradients/norm"] .sample-note')
        assert "kept a sample of 10 steps" in over.inner_text()
        assert errors == []
