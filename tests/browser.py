"""Headless Debian Chromium driven by Playwright, for the browser tests.

CI must run the browser tests, so a missing browser is a failure with a clear
message, never a skip.
"""

from __future__ import annotations

import contextlib
import os

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# TensorBoard loads dynamic plugins through this entry page (with a <base>
# under /data/plugin/torch_visualization/).
PLUGIN_FRAME_URL = "/data/plugin_entry.html?name=torch_visualization"


@contextlib.contextmanager
def chromium(device_scale_factor=1, viewport=(1400, 1000)):
    """Yields a fresh Playwright page in headless Chromium."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(
            "%s is missing: install Debian's chromium (`make browser` does)" % CHROMIUM
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]},
                device_scale_factor=device_scale_factor,
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def plugin_frame(page, timeout_s=30):
    """The iframe TensorBoard loads our tab into."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for frame in page.frames:
            if PLUGIN_FRAME_URL in frame.url:
                return frame
        page.wait_for_timeout(200)
    raise AssertionError("the plugin iframe never appeared; frames: %s" % [f.url for f in page.frames])
