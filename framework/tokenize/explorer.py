"""Token views: coloured terminal output (``tokenizer show``) and the explorer web page (``serve``).

The web page is one static HTML file with a little JavaScript; it posts the text to
``/api/encode`` and draws each tokenizer's tokens as coloured spans, with ids, the token count,
characters and bytes per token. Several tokenizers are shown side by side. The server binds
127.0.0.1 only and reads nothing but the request body.
"""

from __future__ import annotations

import html
import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Background colours (256-colour ANSI codes and CSS) cycled over tokens, as tiktokenizer does.
ANSI_BACKGROUNDS = [153, 186, 217, 151, 223, 183, 159, 224]
CSS_BACKGROUNDS = [
    "#bde0fe",
    "#d8f3a5",
    "#ffc8dd",
    "#b9fbc0",
    "#ffe5b4",
    "#e2c2ff",
    "#a0f0ff",
    "#ffd6d6",
]
MAX_REQUEST_BYTES = 4 << 20


def token_pieces(tokenizer: Any, ids: list[int]) -> list[dict[str, Any]]:
    """Each id with its bytes and a printable text (partial UTF-8 shown as ``<0xNN>`` bytes)."""
    pieces = []
    for i in ids:
        raw = tokenizer.decode_bytes([i])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = "".join(f"<0x{b:02X}>" for b in raw)
        pieces.append({"id": i, "text": text, "bytes": len(raw)})
    return pieces


def describe_encoding(tokenizer: Any, text: str, allowed_special: Any = "all") -> dict[str, Any]:
    ids = tokenizer.encode(text, allowed_special=allowed_special)
    pieces = token_pieces(tokenizer, ids)
    n_bytes = len(text.encode("utf-8"))
    return {
        "name": getattr(tokenizer, "name", "?"),
        "kind": getattr(tokenizer, "kind", "?"),
        "vocab_size": tokenizer.vocab_size,
        "count": len(ids),
        "characters": len(text),
        "bytes": n_bytes,
        "bytes_per_token": round(n_bytes / len(ids), 3) if ids else None,
        "tokens": pieces,
    }


def _visible(text: str) -> str:
    return text.replace("\n", "↵\n").replace("\t", "→")


def ansi_render(tokenizer: Any, text: str, colour: bool = True) -> str:
    """Tokens on coloured backgrounds, then the ids and the count (the ``show`` command)."""
    info = describe_encoding(tokenizer, text)
    parts = []
    for k, piece in enumerate(info["tokens"]):
        shown = _visible(piece["text"])
        if colour:
            parts.append(
                f"\x1b[48;5;{ANSI_BACKGROUNDS[k % len(ANSI_BACKGROUNDS)]}m\x1b[30m{shown}\x1b[0m"
            )
        else:
            parts.append(f"[{shown}]")
    ids = ", ".join(str(p["id"]) for p in info["tokens"])
    bpt = info["bytes_per_token"]
    return (
        "".join(parts)
        + f"\n\n[{ids}]\n{info['count']} tokens, {info['characters']} characters, "
        + f"{info['bytes']} bytes ({bpt if bpt is not None else '-'} bytes/token) — {info['name']}"
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deepdive token explorer</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa}
textarea{width:100%;height:9em;font-family:monospace;font-size:14px}
.grid{display:flex;gap:1em;flex-wrap:wrap}
.panel{flex:1;min-width:320px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em}
.tokens{font-family:monospace;white-space:pre-wrap;word-break:break-all;line-height:1.7}
.tokens span{border-radius:3px;padding:1px 0}
.ids{font-family:monospace;color:#555;font-size:12px;margin-top:.6em;word-break:break-all}
.stats{font-weight:600}
</style></head><body>
<h2>deepdive token explorer</h2>
<textarea id="text" placeholder="Paste text here">__SAMPLE__</textarea>
<div class="grid" id="results"></div>
<script>
const COLOURS = __COLOURS__;
async function refresh() {
  const text = document.getElementById('text').value;
  const res = await fetch('/api/encode', {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify({text})});
  const data = await res.json();
  const grid = document.getElementById('results');
  grid.innerHTML = '';
  for (const tok of data.tokenizers) {
    const panel = document.createElement('div'); panel.className = 'panel';
    const title = document.createElement('div'); title.className = 'stats';
    title.innerHTML = `${tok.name} (${tok.kind}, vocab ${tok.vocab_size}): ` +
      `<span class="count">${tok.count}</span> tokens, ${tok.characters} characters, ` +
      `${tok.bytes_per_token ?? '-'} bytes/token`;
    const box = document.createElement('div'); box.className = 'tokens';
    tok.tokens.forEach((t, k) => {
      const s = document.createElement('span');
      s.textContent = t.text.replaceAll('\\n', '\\u21b5\\n');
      s.style.background = COLOURS[k % COLOURS.length];
      s.title = `id ${t.id}, ${t.bytes} bytes`;
      box.appendChild(s);
    });
    const ids = document.createElement('div'); ids.className = 'ids';
    ids.textContent = '[' + tok.tokens.map(t => t.id).join(', ') + ']';
    panel.append(title, box, ids); grid.appendChild(panel);
  }
  document.body.dataset.ready = '1';
}
document.getElementById('text').addEventListener('input', refresh);
// ?text=... fills the box as a paste would (shareable links; the headless-browser test uses it)
const given = new URLSearchParams(location.search).get('text');
if (given !== null) {
  const box = document.getElementById('text');
  box.value = given;
  box.dispatchEvent(new Event('input'));
} else {
  refresh();
}
</script></body></html>
"""

SAMPLE = "Hello world! Tokenizers split text into pieces: 日本語, emoji 😀, numbers 1234567."


def render_page() -> bytes:
    page = PAGE.replace("__SAMPLE__", html.escape(SAMPLE)).replace(
        "__COLOURS__", json.dumps(CSS_BACKGROUNDS)
    )
    return page.encode("utf-8")


def make_handler(tokenizers: list[Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path.split("?", 1)[0] in ("/", "/index.html"):  # ?text=... is read by the page
                self._send(HTTPStatus.OK, render_page(), "text/html; charset=utf-8")
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            if self.path != "/api/encode":
                self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"text too large", "text/plain")
                return
            try:
                text = json.loads(self.rfile.read(length) or b"{}").get("text", "")
                if not isinstance(text, str):
                    raise ValueError("text must be a string")
            except (ValueError, AttributeError) as error:
                self._send(HTTPStatus.BAD_REQUEST, str(error).encode(), "text/plain")
                return
            body = {"tokenizers": [describe_encoding(t, text) for t in tokenizers]}
            self._send(HTTPStatus.OK, json.dumps(body).encode(), "application/json")

    return Handler


def make_server(
    tokenizers: list[Any], port: int = 8765, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """The explorer's HTTP server (``port=0`` picks a free port); call ``serve_forever()``."""
    return ThreadingHTTPServer((host, port), make_handler(tokenizers))
