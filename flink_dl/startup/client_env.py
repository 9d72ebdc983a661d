"""The client's environment without what PyFlink's loopback workers left in it.

A local loopback job runs its Python workers inside the client, and PyFlink's loopback pool
copies the worker's parameters into the client's ``os.environ`` (``os.environ.update`` in
``BeamFnLoopbackWorkerPoolServicer._start_sdk_worker_main``) and never takes them out. A
process started from the client afterwards inherits them: a fresh interpreter refuses to
start its own JVM (``PYFLINK_GATEWAY_DISABLED``; PyFlink's message blames "job codes in the
top level of the script"), and a TaskManager would run its Python operators as threads
of the client (``PYTHON_LOOPBACK_SERVER_ADDRESS``).

flink-dl's own jobs (``flink_dl.execute``, ``translate_errors``) run inside
:func:`restored_environ`, which gives ``os.environ`` back as it found it. Code that runs
jobs another way can use :func:`restored_environ` itself, or start child processes with
``env=without_loopback_leftovers()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping

log = logging.getLogger(__name__)

#: The variables PyFlink's loopback pool sets in the client (PyFlink 2.3).
LOOPBACK_LEFTOVERS = (
    "PYTHON_LOOPBACK_SERVER_ADDRESS", "PYFLINK_GATEWAY_DISABLED", "_PYFLINK_CONN_INFO_PATH",
    "_PYTHON_WORKER_MEMORY_LIMIT", "BOOT_LOG_DIR", "SEMI_PERSISTENT_DIRECTORY", "python",
    "FLINK_LIB_DIR", "FLINK_PLUGINS_DIR", "FLINK_OPT_DIR", "FLINK_BIN_DIR",
)
#: Seconds ``restored_environ`` waits for the loopback pool's worker threads of the job
#: to end before it restores (the pool applies its parameters only when none runs).
POOL_IDLE_WAIT_S = 5.0

_lock = threading.Lock()
_depth = 0
_found: dict[str, str] | None = None
_pool_busy_at_entry = False


def without_loopback_leftovers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) without :data:`LOOPBACK_LEFTOVERS`:
    the environment for a process started after a local job (``subprocess.run(...,
    env=flink_dl.without_loopback_leftovers())``)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in LOOPBACK_LEFTOVERS}


@contextlib.contextmanager
def restored_environ() -> Iterator[None]:
    """Run a job; afterwards ``os.environ`` is what it was before (variables the job's
    loopback workers added are removed, changed ones reset). Nested or concurrent uses
    (several threads running jobs) restore once, when the last one ends, to what the
    first one found."""
    global _depth, _found, _pool_busy_at_entry
    with _lock:
        if _depth == 0:
            _found = dict(os.environ)
            # workers of a job started elsewhere (execute_async) are not ours to wait for
            _pool_busy_at_entry = _pool_workers() > 0
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            found = _found if _depth == 0 else None
            if found is not None:
                _found = None
                if not _pool_busy_at_entry:
                    _wait_for_idle_pool(POOL_IDLE_WAIT_S)
                _restore(found)


def _restore(found: Mapping[str, str]) -> None:
    added = [k for k in os.environ if k not in found]
    changed = [k for k, v in found.items() if os.environ.get(k) != v]
    for key in added:
        os.environ.pop(key, None)
    for key in changed:
        os.environ[key] = found[key]
    if added or changed:
        log.debug("restored the client's environment after the job: removed %s, reset %s",
                  sorted(added), sorted(changed))


def _wait_for_idle_pool(timeout_s: float) -> None:
    """Wait until PyFlink's loopback pool runs no worker thread: it copies its parameters
    into ``os.environ`` only when its first worker starts, so a later job's workers started
    while an old one still ran would not get them back."""
    deadline = time.monotonic() + timeout_s
    while _pool_workers() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def _pool_workers() -> int:
    """How many worker threads PyFlink's loopback pool runs now (0 without a pool)."""
    import sys

    module = sys.modules.get("pyflink.fn_execution.beam.beam_worker_pool_service")
    pool = getattr(getattr(module, "BeamFnLoopbackWorkerPoolServicer", None), "_instance", None)
    return int(getattr(pool, "_ref_cnt", 0) or 0)
