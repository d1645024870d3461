"""The run-directory lease: one writer per MODEL_DIR, locally and on gs://."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from etils import epath

from framework.core.errors import InputError
from framework.train import lease

try:
    from tests.gcs_emulator import gcs_bucket, gcs_server  # noqa: F401 - fixtures, used below
except ImportError:

    @pytest.fixture
    def gcs_bucket():
        pytest.skip("tests.gcs_emulator is not available")


FAST = {"settle_s": 0.0}


def _write_lease(directory, *, host, pid, heartbeat=None, token="theirs"):
    now = time.time()
    record = {
        "host": host,
        "pid": pid,
        "start": "2026-01-01T00:00:00Z",
        "start_unix": now - 100,
        "heartbeat": now if heartbeat is None else heartbeat,
        "token": token,
    }
    path = epath.Path(directory) / "lease.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def _read_lease(directory):
    return json.loads((epath.Path(directory) / "lease.json").read_text())


@pytest.fixture
def sleeper():
    """A live process of this user (a foreign holder on this host)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_acquire_writes_lease_and_release_removes_it(tmp_path):
    run = tmp_path / "run"  # created on acquire
    held = lease.acquire(str(run), host="h1", **FAST)
    record = _read_lease(run)
    assert record["host"] == "h1" and record["pid"] == os.getpid()
    assert record["token"] == held.token and abs(record["heartbeat"] - time.time()) < 10
    assert record["start"].endswith("Z") and record["start_unix"] <= record["heartbeat"]
    assert sorted(p.name for p in run.iterdir()) == ["lease.json"]  # no temporary left behind
    held.release()
    assert not (run / "lease.json").exists()


def test_context_manager_and_reacquire_in_same_process(tmp_path):
    with lease.acquire(tmp_path, host="h1", **FAST):
        again = lease.acquire(tmp_path, host="h1", **FAST)  # same pid: fine
        assert _read_lease(tmp_path)["token"] == again.token
    assert (tmp_path / "lease.json").exists()  # the first one is no longer ours: left alone
    again.release()
    assert not (tmp_path / "lease.json").exists()


def test_live_process_on_same_host_refused_then_taken_over_once_it_dies(tmp_path, sleeper, capsys):
    _write_lease(tmp_path, host="h1", pid=sleeper.pid)
    with pytest.raises(InputError) as error:
        lease.acquire(tmp_path, host="h1", **FAST)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path}: in use by host h1 pid {sleeper.pid} since ")
    assert re.search(r"\(heartbeat \d+ s ago\); stop that run or use another MODEL_DIR$", message)
    assert _read_lease(tmp_path)["token"] == "theirs"  # untouched

    sleeper.kill()
    sleeper.wait()
    held = lease.acquire(tmp_path, host="h1", **FAST)
    assert _read_lease(tmp_path)["token"] == held.token
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "taking over the lease of a finished process" in err


def test_live_pid_with_stale_heartbeat_is_a_reused_pid(tmp_path, sleeper, capsys):
    _write_lease(tmp_path, host="h1", pid=sleeper.pid, heartbeat=time.time() - 50)
    lease.acquire(tmp_path, host="h1", stale_after_s=10, **FAST)
    assert "stale, taking it over" in capsys.readouterr().err


def test_dead_pid_taken_over_at_once(tmp_path, capsys):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    _write_lease(tmp_path, host="h1", pid=proc.pid)
    held = lease.acquire(tmp_path, host="h1", **FAST)
    assert _read_lease(tmp_path)["token"] == held.token
    assert "finished process" in capsys.readouterr().err


def test_other_host_fresh_refused_stale_taken_over(tmp_path, capsys):
    _write_lease(tmp_path, host="other", pid=os.getpid(), heartbeat=time.time() - 5)
    with pytest.raises(InputError, match=r"in use by host other pid \d+ .*heartbeat [5-9] s ago"):
        lease.acquire(tmp_path, host="h1", stale_after_s=60, **FAST)

    _write_lease(tmp_path, host="other", pid=os.getpid(), heartbeat=time.time() - 5)
    held = lease.acquire(tmp_path, host="h1", stale_after_s=1, **FAST)
    assert _read_lease(tmp_path)["token"] == held.token
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "host other" in err and "stale, taking it over" in err


def test_environment_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPDIVE_LEASE_HOST", "envhost")
    monkeypatch.setenv("DEEPDIVE_LEASE_STALE_S", "1")
    _write_lease(tmp_path, host="other", pid=1, heartbeat=time.time() - 5)
    held = lease.acquire(tmp_path, **FAST)
    assert _read_lease(tmp_path)["host"] == "envhost"
    held.release()
    monkeypatch.delenv("DEEPDIVE_LEASE_HOST")
    assert lease.acquire(tmp_path, **FAST).record["host"] == socket.gethostname()


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        "",
        '{"host": "h"}',
        '{"host": "h", "pid": "1", "start_unix": 1, "heartbeat": 1, "token": "t"}',
        '{"host": "h", "pid": 0, "start_unix": 1, "heartbeat": 1, "token": "t"}',
        '{"host": "h", "pid": 1, "start_unix": 1, "heartbeat": NaN, "token": "t"}',
    ],
)
def test_corrupt_lease_taken_over(tmp_path, capsys, content):
    (tmp_path / "lease.json").write_text(content)
    held = lease.acquire(tmp_path, host="h1", **FAST)
    assert _read_lease(tmp_path)["token"] == held.token
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable lease" in err


def test_lost_race_is_refused(tmp_path, monkeypatch):
    real_sleep = time.sleep

    def rival_wins(seconds):  # another writer lands during the settle pause
        _write_lease(tmp_path, host="rival", pid=1234, token="rival")
        real_sleep(0)

    monkeypatch.setattr(lease.time, "sleep", rival_wins)
    with pytest.raises(InputError, match="lost the race for the lease: .* host rival pid 1234"):
        lease.acquire(tmp_path, host="h1")


def test_heartbeat_thread_updates_and_detects_takeover(tmp_path, capsys):
    held = lease.acquire(tmp_path, host="h1", heartbeat_every_s=0.05, **FAST)
    first = _read_lease(tmp_path)["heartbeat"]
    with held:
        deadline = time.time() + 10
        while _read_lease(tmp_path)["heartbeat"] == first and time.time() < deadline:
            time.sleep(0.02)
        assert _read_lease(tmp_path)["heartbeat"] > first
        _write_lease(tmp_path, host="thief", pid=4321, token="thief")
        while not held.lost and time.time() < deadline:
            time.sleep(0.02)
        assert held.lost
    assert _read_lease(tmp_path)["token"] == "thief"  # release leaves the new holder's lease
    assert "lost the lease" in capsys.readouterr().err
    with pytest.raises(InputError, match="lost the lease"):
        held.heartbeat()


def test_sigkilled_holder_is_taken_over(tmp_path):
    """A real training process killed with SIGKILL leaves its lease behind; the next one takes it."""
    code = (
        "import sys, time\n"
        "from framework.train.lease import acquire\n"
        "acquire(sys.argv[1], heartbeat_every_s=0.1).start_heartbeat()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {proc.pid} "):
            lease.acquire(tmp_path, **FAST)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _read_lease(tmp_path)["pid"] == proc.pid
    held = lease.acquire(tmp_path, **FAST)
    assert _read_lease(tmp_path)["pid"] == os.getpid()
    held.release()


def test_gcs_acquire_refuse_takeover(gcs_bucket, capsys):
    run = f"{gcs_bucket}/runs/lease-test"
    held = lease.acquire(run, host="h1", settle_s=0.05)
    assert _read_lease(run)["token"] == held.token
    with pytest.raises(InputError, match=rf"^{run}: in use by host h1 pid {os.getpid()} "):
        lease.acquire(run, host="h2", stale_after_s=60, settle_s=0.05)
    held.heartbeat()

    _write_lease(run, host="h2", pid=1, heartbeat=time.time() - 100)
    taken = lease.acquire(run, host="h1", stale_after_s=10, settle_s=0.05)
    assert "stale, taking it over" in capsys.readouterr().err
    taken.release()
    assert not (epath.Path(run) / "lease.json").exists()
