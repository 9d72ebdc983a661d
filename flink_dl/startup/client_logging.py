"""The client keeps its log handlers while a local loopback job runs.

In loopback mode PyFlink runs the job's Python workers inside the client, and its loopback
pool, each time it starts one (``BeamFnLoopbackWorkerPoolServicer._start_sdk_worker_main``),
replaces every handler of the root logger with Beam's, which ships records to the Flink
runtime's log: from then on the client's own log lines (a user's ``basicConfig``, and
flink-dl's, such as ``flink_dl.execute`` saying that a job ran past its timeout) no longer
reached its stderr. ``install()`` (idempotent; flink-dl calls it wherever it builds or runs
a job) wraps that start: the handlers the client had are added back as soon as the pool
has replaced them (Beam's handler stays, so the Flink log keeps its copy), and a root level
the pool changed is set back.
"""

from __future__ import annotations

import logging
import threading
import time

#: How long the keeper watches for the pool's replacement of the root handlers (s).
WATCH_S = 30.0
_lock = threading.Lock()
_installed = False


def install() -> None:
    """Wrap PyFlink's loopback worker start (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        try:
            from pyflink.fn_execution.beam.beam_worker_pool_service import (
                BeamFnLoopbackWorkerPoolServicer,
            )
        except ImportError:
            return
        original = BeamFnLoopbackWorkerPoolServicer._start_sdk_worker_main

        def start(self: object, request: object) -> object:
            root = logging.getLogger()
            threading.Thread(target=give_back, args=(list(root.handlers), root.level),
                             daemon=True, name="flink-dl-client-logging").start()
            return original(self, request)

        BeamFnLoopbackWorkerPoolServicer._start_sdk_worker_main = start
        _installed = True


def give_back(handlers: list[logging.Handler], level: int, watch_s: float = WATCH_S) -> None:
    """Once the root logger has lost any of ``handlers`` (within ``watch_s``), add them
    back, and set its level back to ``level`` if it changed."""
    if not handlers:
        return
    root = logging.getLogger()
    deadline = time.monotonic() + watch_s
    while time.monotonic() < deadline and all(h in root.handlers for h in handlers) \
            and root.level == level:
        time.sleep(0.01)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    if root.level != level:
        root.setLevel(level)
