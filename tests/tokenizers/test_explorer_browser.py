"""The token explorer page in a real headless Chromium (skipped where no Chromium is installed).

Chromium's own ``--dump-dom`` gives the DOM after the page's JavaScript has fetched
``/api/encode`` and drawn the tokens, and ``--screenshot`` the rendered pixels; no Playwright is
needed. The text arrives through ``?text=``, which fills the box and fires the same ``input``
event a paste does. (CI installs Debian's ``chromium`` best-effort in ``.ci/run``.)
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import threading
import urllib.parse

import pytest

TEXT = "To be, or not to be, that is the question 😀 1234567\nnaïve 日本語 <b>&amp;</b>"


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run_chromium(browser: str, tmp_path, url: str, *args: str) -> str:
    profile = tmp_path / "profile"
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",  # let the page's fetch + drawing finish before dumping
        *args,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def explorer(small_bpe, byte_tok):
    from framework.tokenize.explorer import make_server

    server = make_server([small_bpe, byte_tok], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}/?text={urllib.parse.quote(TEXT)}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(_browser() is None, reason="no Chromium installed (apt-get install chromium)")
def test_page_renders_coloured_tokens_with_the_encoders_count(
    explorer, small_bpe, byte_tok, tmp_path
):
    browser = _browser()
    dom = _run_chromium(browser, tmp_path, explorer, "--dump-dom")
    assert 'data-ready="1"' in dom, dom[-2000:]

    # one panel per tokenizer, in order; each shows the encoder's count and one span per token
    panels = dom.split('<div class="panel">')[1:]
    assert len(panels) == 2
    for panel, tok in zip(panels, (small_bpe, byte_tok), strict=True):
        ids = tok.encode(TEXT, allowed_special="all")
        shown = re.search(r'<span class="count">(\d+)</span> tokens', panel)
        assert shown and int(shown.group(1)) == len(ids)
        tokens = panel.split('<div class="tokens">', 1)[1].split("</div>", 1)[0]
        attrs = re.findall(r"<span ([^>]*)>", tokens)
        shown_ids = [int(re.search(r'title="id (\d+),', a).group(1)) for a in attrs]
        backgrounds = {re.search(r'style="background: ([^"]+);"', a).group(1) for a in attrs}
        assert shown_ids == ids
        assert len(backgrounds) > 1  # tokens are coloured alternately
        ids_line = re.search(r'<div class="ids">\[([^\]]*)\]</div>', panel).group(1)
        assert [int(i) for i in ids_line.split(", ")] == ids
        # the pieces put back together are the text (newlines drawn as ↵ + newline, bytes of a
        # partial UTF-8 character as <0xHH>)
        pieces = re.findall(r"<span [^>]*>([^<]*)</span>", tokens)
        joined = html.unescape("".join(pieces)).replace("\u21b5\n", "\n")
        raw = b"".join(
            bytes([int(part[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-F]{2}>", part) else part.encode()
            for part in re.split(r"(<0x[0-9A-F]{2}>)", joined)
        )
        assert raw.decode("utf-8") == TEXT

    # the screenshot shows the token colours
    shot = tmp_path / "explorer.png"
    _run_chromium(browser, tmp_path, explorer, f"--screenshot={shot}", "--window-size=1200,900")
    from PIL import Image

    from framework.tokenize.explorer import CSS_BACKGROUNDS

    pixels = Image.open(shot).convert("RGB")
    colours = {colour for _, colour in pixels.getcolors(maxcolors=1 << 20)}
    drawn = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in CSS_BACKGROUNDS}
    assert len(drawn & colours) >= 3, "token background colours missing from the screenshot"
