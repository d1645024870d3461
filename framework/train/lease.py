"""One writer per run directory: a lease file ``MODEL_DIR/lease.json`` names the run that holds it.

Two trainings writing the same MODEL_DIR (a second launch by mistake, a restarted job while the
old one still runs) corrupt each other's checkpoints. ``acquire`` takes the lease or refuses with
a one-line ``InputError`` naming the holder; a lease whose holder is gone is taken over:

* no lease file, or one we already hold (same host and pid) → take it;
* same host, pid no longer alive → take it over at once (one line to stderr);
* same host, pid alive → refused, unless its heartbeat is stale (the pid was then reused);
* another host → refused while its heartbeat is fresh, taken over (with a warning) once it is
  older than ``stale_after_s``;
* unreadable or malformed lease → treated as stale: taken over with a warning.

The holder rewrites the heartbeat every ``heartbeat_every_s`` from a daemon thread; a process
killed with SIGKILL leaves its lease behind, which the rules above then take over.

This is NOT a distributed lock. Files work the same locally and on GCS (``etils.epath``), where
writes are last-writer-wins: after writing, ``acquire`` waits ``settle_s`` and reads the file back,
and refuses if another writer's token is there. That narrows the race of two simultaneous starts
to writes that land more than ``settle_s`` apart in the wrong order; writing with a GCS
generation precondition (``ifGenerationMatch``) would make it exact.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import threading
import time
from typing import Any

from etils import epath

from framework.core import paths
from framework.core.errors import InputError

LEASE_FILE = "lease.json"
_FIELDS = {"host": str, "pid": int, "start_unix": (int, float), "heartbeat": (int, float)}


def _warn(message: str) -> None:
    print(f"deepdive: {message}", file=sys.stderr)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _read(path: epath.Path) -> dict[str, Any] | None:
    """The lease at ``path``; ``{}`` when it is unreadable or malformed; None when there is none."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or not isinstance(record.get("token"), str):
        return {}
    if not all(isinstance(record.get(k), t) for k, t in _FIELDS.items()):
        return {}
    sane = (
        record["pid"] > 0 and 0 <= record["start_unix"] < 1e11 and 0 <= record["heartbeat"] < 1e11
    )
    return record if sane else {}


def _describe(directory: str, record: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record["start_unix"]))
    age = time.time() - record["heartbeat"]
    return (
        f"{directory}: in use by host {record['host']} pid {record['pid']} since {since} "
        f"(heartbeat {age:.0f} s ago)"
    )


class Lease:
    """A held lease: ``heartbeat()``, ``start_heartbeat()``, ``release()``; a context manager that
    starts the heartbeat on entry and releases on exit. ``lost`` is set when another run took the
    lease over (the heartbeat thread then stops and says so on stderr). Each ``acquire`` makes a
    new token, so re-acquiring in the same process leaves the older ``Lease`` lost."""

    def __init__(self, model_dir: epath.Path, record: dict[str, Any], heartbeat_every_s: float):
        self.path = model_dir / LEASE_FILE
        self.record = record
        self.heartbeat_every_s = heartbeat_every_s
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> str:
        return self.record["token"]

    def _ours(self) -> bool:
        current = _read(self.path)
        return bool(current) and current["token"] == self.token

    def heartbeat(self) -> None:
        """Rewrite the heartbeat; InputError (and ``lost``) if the lease is no longer ours."""
        current = _read(self.path)
        if not current or current["token"] != self.token:
            self.lost = True
            holder = _describe(str(self.path.parent), current) if current else "lease.json is gone"
            raise InputError(f"lost the lease: {holder}")
        self.record["heartbeat"] = time.time()
        _write(self.path, self.record)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_every_s):
            try:
                self.heartbeat()
            except InputError as error:
                _warn(f"{error}; no longer heartbeating")
                return
            except OSError as error:  # transient storage error: try again next time
                _warn(f"lease heartbeat failed: {error}")

    def start_heartbeat(self) -> Lease:
        """Start the daemon thread that heartbeats every ``heartbeat_every_s`` (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
            self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and delete lease.json if it is still ours."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if not self.lost and self._ours():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Lease:
        return self.start_heartbeat()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _write(path: epath.Path, record: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so a local reader never sees half a file (an
    object upload to a bucket is atomic already, and a rename there is a copy and a delete)."""
    if paths.is_url(path):
        path.write_text(json.dumps(record, indent=1) + "\n")
        return
    tmp = path.parent / f".{path.name}.{record['token']}.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def acquire(
    model_dir: str | os.PathLike[str],
    *,
    stale_after_s: float | None = None,
    heartbeat_every_s: float = 30,
    host: str | None = None,
    settle_s: float = 0.2,
) -> Lease:
    """Take the lease of ``model_dir`` (local path or gs:// URL) by the rules in the module
    docstring, or raise a one-line InputError naming the holder. ``host`` defaults to
    $DEEPDIVE_LEASE_HOST or the hostname, ``stale_after_s`` to $DEEPDIVE_LEASE_STALE_S or 600."""
    if stale_after_s is None:
        stale_after_s = float(os.environ.get("DEEPDIVE_LEASE_STALE_S", 600))
    host = host or os.environ.get("DEEPDIVE_LEASE_HOST") or socket.gethostname()
    directory = epath.Path(model_dir)
    path = directory / LEASE_FILE
    pid = os.getpid()
    fix = "stop that run or use another MODEL_DIR"

    current = _read(path)
    if current == {}:
        _warn(f"{path}: unreadable lease, taking it over")
    elif current is not None and (current["host"], current["pid"]) != (host, pid):
        stale = time.time() - current["heartbeat"] > stale_after_s
        if current["host"] == host and not _pid_alive(current["pid"]):
            _warn(f"{path}: taking over the lease of a finished process (pid {current['pid']})")
        elif stale:
            _warn(f"{_describe(str(directory), current)}; stale, taking it over")
        else:
            raise InputError(f"{_describe(str(directory), current)}; {fix}")

    now = time.time()
    record = {
        "host": host,
        "pid": pid,
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "start_unix": now,
        "heartbeat": now,
        "token": secrets.token_hex(16),
    }
    directory.mkdir(parents=True, exist_ok=True)
    _write(path, record)
    time.sleep(settle_s)
    winner = _read(path)
    if not winner or winner["token"] != record["token"]:
        holder = _describe(str(directory), winner) if winner else f"{path} vanished"
        raise InputError(f"lost the race for the lease: {holder}; {fix}")
    return Lease(directory, record, heartbeat_every_s)
