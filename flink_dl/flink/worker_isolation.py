"""One Python worker process per Python operator, so that a dying worker cannot take the
TaskManager down with it.

By default PyFlink lets every Python operator of a slot share one Python worker process
(``python.fn-execution.memory.managed=true``: the worker is a managed-memory resource of
the slot, leased by each operator). When that worker dies (SIGKILL, out of memory, a crash
in native code) while two of its operators have bundles in flight, their tasks fail and
are cancelled at the same moment, and Beam's shared ``DefaultJobBundleFactory`` is closed
by one task while the other still releases its bundle. The reference count of the worker
then goes negative, Beam raises ``IllegalStateException: Reference count must not be
negative`` in the task's clean-up, and Flink treats that as FATAL: the TaskManager stops.
On the embedded mini-cluster nothing replaces it, so every restart fails with
``NoResourceAvailableException`` until the restart attempts are spent (seen in CI, and
reproduced on a 2-core machine under CPU load).

With ``python.fn-execution.memory.managed=false`` each Python operator starts its own
worker, and its bundles and its clean-up run on its own task thread: there is no shared
count to race on. The cost is one more Python process per extra Python operator in a
slot (measured in docs/architecture.md); it also lets those operators use separate CPUs.

:func:`apply` sets it for process-mode jobs (every job on a real cluster, and local jobs in
process mode) that are to recover from failures (a restart strategy, or Flink's default one
under checkpointing) and whose configuration does not set the key itself; the ML-cluster
builder, ``predict`` and :func:`flink_dl.execute` call it. A job that does not restart
keeps the shared worker: it fails on a dead worker in any case, and the extra workers
would cost it start-up time and CPU (W1: +6 CPU s, +3 s wall on 2 cores).
``tests/test_worker_isolation.py`` checks which jobs get it and counts a real job's
workers. A local loopback job is
left alone: its workers are threads of the client and cannot die on their own, and a
worker per operator would add start-up time there. ``FLINK_DL_SHARED_PYTHON_WORKER=1``
keeps PyFlink's shared worker.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from flink_dl.flink.loopback_launcher import runs_in_loopback

log = logging.getLogger(__name__)

MANAGED_MEMORY = "python.fn-execution.memory.managed"
SWITCH_ENV = "FLINK_DL_SHARED_PYTHON_WORKER"
RESTART_STRATEGY = "restart-strategy.type"
CHECKPOINT_INTERVAL = "execution.checkpointing.interval"
NO_RESTART = frozenset({"none", "off", "disable"})


def _shared_worker_requested() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() in ("1", "on", "true", "yes")


def restarts(j_config: Any) -> bool:
    """Whether Flink restarts the job of ``j_config`` after a failure: a restart strategy
    other than none, or none set and checkpointing on (Flink then restarts by default)."""
    options = j_config.toMap()
    kind = options.get(RESTART_STRATEGY)
    if kind is None:
        return options.get(CHECKPOINT_INTERVAL) is not None
    return str(kind).strip().lower() not in NO_RESTART


def apply(j_config: Any) -> bool:
    """Give each Python operator of this restartable process-mode job its own worker (see
    module doc); ``j_config`` is the Java ``Configuration`` of the job's environment.
    Returns whether the setting was made."""
    if _shared_worker_requested() or runs_in_loopback(j_config):
        return False
    if j_config.toMap().containsKey(MANAGED_MEMORY) or not restarts(j_config):
        return False  # the user's own choice, or nothing to recover
    j_config.setString(MANAGED_MEMORY, "false")
    log.debug("%s=false: one Python worker per Python operator", MANAGED_MEMORY)
    return True


def apply_to_table_env(t_env: Any) -> bool:
    """:func:`apply` for the environment under a ``TableEnvironment``."""
    from pyflink.util.java_utils import get_j_env_configuration

    return apply(get_j_env_configuration(t_env._get_j_env()))
