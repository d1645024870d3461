"""``--runner=dask``: run the Beam stages on a ``dask.distributed`` cluster.

Beam ships a Dask runner (``apache_beam.runners.dask.dask_runner.DaskRunner``) that needs the
address of a running scheduler. This module turns the short form into Beam's own options:

* ``--runner=dask --dask_client_address=HOST:PORT`` joins that cluster;
* ``--runner=dask`` alone starts a :class:`distributed.LocalCluster` on 127.0.0.1 (two worker
  processes, no dashboard) for this process and closes it when the process exits.

Everything else after ``--`` is passed through unchanged, so
``--runner=apache_beam.runners.dask.dask_runner.DaskRunner --dask_client_address=...`` works too.

The Dask runner reports no Beam metrics (``result.metrics()`` raises); :func:`take_counters`
gathers the ``deepdive`` counters that :func:`beam_pipelines.common.count` keeps in each worker
process instead (see :func:`beam_pipelines.common.collect_counters`).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Sequence
from typing import Any

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
SHORT_NAMES = ("dask", "Dask", "DaskRunner")
LOCAL_WORKERS = 2

_lock = threading.Lock()
_local_cluster: Any = None


def is_dask(runner: str) -> bool:
    return runner in SHORT_NAMES or runner == DASK_RUNNER


def expand_args(beam_args: Sequence[str]) -> list[str]:
    """Beam's options for ``--runner=dask``; other arguments are returned unchanged.

    Without ``--dask_client_address`` (or ``--dask_scheduler_file``) a local cluster is started
    (once per process) and its address filled in.
    """
    args = list(beam_args)
    out: list[str] = []
    short = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--runner" and i + 1 < len(args) and args[i + 1] in SHORT_NAMES:
            short, i = True, i + 2
            continue
        if arg.startswith("--runner=") and arg.split("=", 1)[1] in SHORT_NAMES:
            short, i = True, i + 1
            continue
        out.append(arg)
        i += 1
    if not short:
        if any(a in (f"--runner={DASK_RUNNER}", DASK_RUNNER) for a in args):
            allow_pickling_locks()
        return args
    names = {a.split("=", 1)[0] for a in out}
    if not names & {"--dask_npartitions", "--dask_partition_size"}:
        out.append("--dask_partition_size=1")  # one input file per task: files run in parallel
    if not names & {"--dask_client_address", "--dask_scheduler_file"}:
        out.append(f"--dask_client_address={local_cluster_address()}")
    allow_pickling_locks()
    return [f"--runner={DASK_RUNNER}", *out]


def allow_pickling_locks() -> None:
    """Pickle a lock as a new lock, as Beam's own pickler does (Dask uses plain cloudpickle).

    Plugins keep a ``threading.Lock`` for their lazy loading (e.g. the URL filter's lists); a
    worker needs a fresh one, not the client's.
    """
    import copyreg

    copyreg.dispatch_table.setdefault(type(threading.Lock()), _new_lock)
    copyreg.dispatch_table.setdefault(type(threading.RLock()), _new_rlock)


def dask_setup(_service: Any) -> None:
    """Dask preload hook: start a real cluster's scheduler and workers with
    ``--preload beam_pipelines.dask_runner`` so that they, too, can pickle the plugins' locks
    (the scheduler re-pickles every task it forwards to a worker)."""
    allow_pickling_locks()


def _new_lock(_lock: Any) -> tuple[Any, tuple]:
    return threading.Lock, ()


def _new_rlock(_lock: Any) -> tuple[Any, tuple]:
    return threading.RLock, ()


def local_cluster_address() -> str:
    """Address of this process's local cluster (127.0.0.1, worker processes), started once."""
    global _local_cluster
    with _lock:
        if _local_cluster is None:
            from distributed import LocalCluster

            logging.getLogger("distributed").setLevel(logging.ERROR)
            _local_cluster = LocalCluster(
                host="127.0.0.1",
                n_workers=LOCAL_WORKERS,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            atexit.register(close_local_cluster)
        return _local_cluster.scheduler_address


def close_local_cluster() -> None:
    """Stop the cluster :func:`local_cluster_address` started (idempotent)."""
    global _local_cluster
    with _lock:
        cluster, _local_cluster = _local_cluster, None
    if cluster is not None:
        cluster.close()


def take_counters(result: Any) -> dict[str, int]:
    """Sum and reset the ``deepdive`` counters kept in the workers of ``result``'s cluster.

    Then closes the client the runner opened for this pipeline (left open, it would try to
    reconnect for 30 s once the cluster is gone).
    """
    from beam_pipelines import common

    try:
        per_worker = result.client.run(common.take_worker_counters)
    finally:
        result.client.close()
    totals: dict[str, int] = {}
    for counters in per_worker.values():
        for name, value in counters.items():
            totals[name] = totals.get(name, 0) + value
    return totals
