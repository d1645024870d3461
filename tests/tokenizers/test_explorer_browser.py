"""The token explorer page in a real headless Chromium (skipped where Playwright/Chromium is absent)."""

from __future__ import annotations

import re
import shutil
import threading

import pytest


def _browser_executable() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_page_renders_coloured_tokens_with_the_encoders_count(small_bpe, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    from framework.token_explorer import make_server

    server = make_server([small_bpe], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    text = "To be, or not to be, that is the question 😀 1234567"
    try:
        with playwright.sync_playwright() as p:
            try:
                browser = p.chromium.launch(executable_path=_browser_executable())
            except Exception as error:  # noqa: BLE001 - no browser installed here
                pytest.skip(f"no headless Chromium: {error}")
            page = browser.new_page()
            host, port = server.server_address[:2]
            page.goto(f"http://{host}:{port}/")
            page.fill("#text", text)
            page.wait_for_function(
                "document.querySelector('.count') && "
                f"document.querySelector('.count').textContent == '{len(small_bpe.encode(text))}'"
            )
            spans = page.query_selector_all(".tokens span")
            assert len(spans) == len(small_bpe.encode(text))
            colours = {s.evaluate("e => getComputedStyle(e).backgroundColor") for s in spans}
            assert len(colours) > 1
            page.screenshot(path=str(tmp_path / "explorer.png"))
            assert re.search(r"\d+ tokens", page.inner_text("body"))
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
