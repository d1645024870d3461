"""``extractors.trafilatura``: main text of an HTML page with Trafilatura, FineWeb's call.

FineWeb (datatrove's ``Trafilatura`` step) calls
``trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=True)``
with a 1 s time limit per document. deepdive makes the same call with two differences:

* **Order-independent output.** ``deduplicate=True`` makes Trafilatura drop any text element
  (> 100 chars) seen more than twice before — in a process-wide LRU cache
  (``trafilatura.deduplication.LRU_TEST``), so in datatrove the text of a page depends on which
  pages the worker extracted before (adbar/trafilatura#778). deepdive passes a *fresh*
  ``LRUCache`` to every call (Trafilatura ≥ 2 accepts one as ``deduplicate``), so repeated
  boilerplate inside one page is still removed but nothing leaks from one page to the next.
* **A time limit that cannot hang a worker.** Extraction runs in one long-lived child process
  per worker (started lazily on first use); when a page takes more than ``timeout`` seconds of
  the child's CPU time (or 10× that in wall time; datatrove counts wall time, which makes the
  result depend on machine load) the child is killed and restarted and :class:`ExtractionTimeout` is raised (the pipeline writes
  the page to ``errors/`` with reason ``timeout``). ``timeout=None`` runs in-process without a
  limit (what ``deepdive explain`` and tests use).

An empty result is returned as ``""``; the pipeline drops such pages with reason ``empty``.
"""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from framework.core.registry import EXTRACTORS

WALL_FACTOR = 10  # wall-clock cap = WALL_FACTOR × the CPU-time limit
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ExtractionTimeout(Exception):
    """The page took longer than the extractor's time limit."""


class ExtractionCrashed(Exception):
    """The extraction child process died (e.g. killed for memory) while working on the page."""


def extract_text(html: str, options: dict[str, Any]) -> str:
    """One Trafilatura call with a per-call dedup cache (no state shared across pages)."""
    import trafilatura
    from trafilatura.deduplication import LRUCache
    from trafilatura.settings import LRU_SIZE

    kwargs = dict(options)
    if kwargs.pop("deduplicate", False):
        kwargs["deduplicate"] = LRUCache(maxsize=LRU_SIZE)
    return trafilatura.extract(html, **kwargs) or ""


def _write_frame(stream: Any, tag: bytes, payload: str) -> None:
    data = payload.encode("utf-8", errors="surrogatepass")
    stream.write(tag + struct.pack("<Q", len(data)) + data)
    stream.flush()


def _read_exactly(stream: Any, size: int) -> bytes:
    """``size`` bytes from a pipe (raw pipe reads may return fewer bytes than asked)."""
    chunks = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: Any) -> tuple[bytes, str]:
    head = _read_exactly(stream, 9)
    if len(head) < 9:
        raise EOFError("extraction pipe closed")
    (size,) = struct.unpack("<Q", head[1:])
    data = _read_exactly(stream, size)
    if len(data) < size:
        raise EOFError("extraction pipe closed mid-message")
    return head[:1], data.decode("utf-8", errors="surrogatepass")


def _child_main() -> None:
    """Extraction child (``python -m plugins.extractors.trafilatura OPTIONS_JSON``).

    Protocol on stdin/stdout: frames of 1 tag byte + little-endian u64 length + UTF-8 payload.
    Requests are ``H`` + html; answers ``T`` + text or ``E`` + error message; ``R`` once ready.
    """
    import gc
    import logging

    logging.disable(logging.WARNING)
    options = json.loads(sys.argv[1])
    try:  # let the OS kill this child first when memory runs out, not the worker
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000\n")
    except OSError:
        pass
    extract_text("<html><body><p>warm up</p></body></html>", options)
    gc.freeze()  # the imported modules never become garbage: keep them out of every collection
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _write_frame(stdout, b"R", "")
    while True:
        try:
            _tag, html = _read_frame(stdin)
        except EOFError:
            return
        try:
            _write_frame(stdout, b"T", extract_text(html, options))
        except Exception as error:  # noqa: BLE001 - reported to the parent as the page's error
            _write_frame(stdout, b"E", f"{type(error).__name__}: {error}")


class _Sandbox:
    """A long-lived extraction child, killed and restarted when a page runs past the limit."""

    def __init__(self, options: dict[str, Any], startup_timeout: float = 120.0):
        self.options = options
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self.pid = os.getpid()
        self.lock = threading.Lock()

    def _start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, json.dumps(self.options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        if not self._wait_readable(self.startup_timeout):
            self.close()
            raise RuntimeError("trafilatura extraction process did not start")
        tag, _ = _read_frame(self.process.stdout)
        if tag != b"R":
            self.close()
            raise RuntimeError("trafilatura extraction process sent an unexpected greeting")

    def _wait_readable(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return bool(ready)

    def _cpu_seconds(self) -> float | None:
        """CPU time (user + system) the child has used so far; None where /proc is missing."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            return None

    def _wait_for_answer(self, timeout: float) -> bool:
        """Wait until the child answers or has spent ``timeout`` s of CPU on this page.

        CPU time, not wall time, so a busy machine does not turn slow pages into timeouts (the
        result must not depend on the load); a wall-clock cap of ``WALL_FACTOR × timeout``
        still ends a child that sleeps or is starved.
        """
        start_cpu = self._cpu_seconds()
        if start_cpu is None:
            return self._wait_readable(timeout)
        wall_deadline = time.monotonic() + max(timeout * WALL_FACTOR, timeout)
        wait = timeout
        while True:
            if self._wait_readable(wait):
                return True
            used = self._cpu_seconds()
            if used is None or used - start_cpu >= timeout or time.monotonic() >= wall_deadline:
                return self._wait_readable(0)
            wait = max(0.01, min(timeout - (used - start_cpu), wall_deadline - time.monotonic()))

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(5)
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
        self.process = None

    def extract(self, html: str, timeout: float) -> str:
        with self.lock:
            if self.pid != os.getpid():  # inherited through fork: start our own child
                self.process, self.pid = None, os.getpid()
            if self.process is None or self.process.poll() is not None:
                self.close()
                self._start()
            try:
                _write_frame(self.process.stdin, b"H", html)
                if not self._wait_for_answer(timeout):
                    self.close()
                    raise ExtractionTimeout(f"extraction took longer than {timeout} s")
                tag, payload = _read_frame(self.process.stdout)
            except (EOFError, OSError) as error:
                self.close()
                raise ExtractionCrashed(f"extraction process died: {error}") from None
            if tag == b"E":
                raise RuntimeError(payload)
            return payload

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


@EXTRACTORS.register("trafilatura")
class Trafilatura:
    """Trafilatura main-text extraction with FineWeb's options, order-independent, time-limited.

    Args:
      favor_precision: prefer less but cleaner text (FineWeb: True).
      include_comments: keep user comments (FineWeb: False).
      include_tables: keep table text (Trafilatura's default and FineWeb's: True).
      deduplicate: drop text elements repeated more than twice *within the page* (FineWeb: True;
        deepdive resets the cache per page, see the module docstring).
      timeout: seconds per page before the page is given up (FineWeb: 1); None = no limit,
        in-process.
    """

    def __init__(
        self,
        favor_precision: bool = True,
        include_comments: bool = False,
        include_tables: bool = True,
        deduplicate: bool = True,
        timeout: float | None = 1.0,
    ):
        self.options = {
            "favor_precision": favor_precision,
            "include_comments": include_comments,
            "include_tables": include_tables,
            "deduplicate": deduplicate,
        }
        self.timeout = timeout
        self._sandbox: _Sandbox | None = None

    def extract(self, html: str) -> str:
        """Main text of ``html`` ("" when none); raises ExtractionTimeout past the time limit."""
        if self.timeout is None:
            return extract_text(html, self.options)
        if self._sandbox is None:
            self._sandbox = _Sandbox(self.options)
        return self._sandbox.extract(html, self.timeout)

    def explain(self, html: str) -> dict[str, Any]:
        return {"options": dict(self.options), "timeout_s": self.timeout, "html_chars": len(html)}

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def __getstate__(self) -> dict[str, Any]:  # pickled into Beam workers without the child
        state = self.__dict__.copy()
        state["_sandbox"] = None
        return state


if __name__ == "__main__":
    _child_main()
