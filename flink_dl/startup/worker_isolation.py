"""A Python worker process per Python operator in local process-mode jobs that restart, so
that a dying worker cannot stop the mini-cluster's only TaskManager.

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

With ``python.fn-execution.memory.managed=false`` each Python operator (each chain of
Python operators that PyFlink fuses) starts its own Beam bundle factory and worker, used
and closed only by its own task thread: there is no shared count to race on.

:func:`apply` sets it for a job that
- runs on the local mini-cluster in process mode (in loopback mode the workers are
  threads of the client and cannot die on their own),
- is to recover from failures (a restart strategy, or checkpointing with Flink's default
  strategy; a job that does not restart fails on a dead worker in any case), and
- does not set the key itself.

The ML-cluster builder, ``predict`` and :func:`flink_dl.execute` call it, so configure
restarts or checkpointing before building the job. Costs, measured on 2 cores: a one-slot
job with four Python operators runs 4 workers instead of 1 (~5.7 s instead of ~4.6 s);
W1 would spend +6 CPU s and ~3 s more. The workers also run without the memory limit
that managed memory gives them. That is why jobs on real clusters are left alone: there
a stopped TaskManager is replaced (Kubernetes, YARN) and memory limits matter; set the key
to ``false`` yourself where a cluster does not replace TaskManagers.
``FLINK_DL_SHARED_PYTHON_WORKER=1`` keeps PyFlink's shared worker everywhere.
"""

from __future__ import annotations

import logging
from typing import Any

from flink_dl.settings import ENV_NAMES, RuntimeSettings
from flink_dl.startup.loopback_launcher import local_python_mode

log = logging.getLogger(__name__)

MANAGED_MEMORY = "python.fn-execution.memory.managed"
SWITCH_ENV = ENV_NAMES["shared_python_worker"]
#: ``restart-strategy.type`` values that mean "never restart" (Flink's RestartStrategyType).
NO_RESTART = frozenset({"none", "off", "disable"})


def restarts(*j_configs: Any) -> bool:
    """Whether Flink restarts a job configured by ``j_configs`` (Java ``Configuration``s,
    the first that sets an option wins) after a failure: a restart strategy other than
    none, or none set and checkpointing on (Flink's default strategy then restarts).
    Options are read as Flink reads them, old key names included."""
    from pyflink.java_gateway import get_gateway

    options = get_gateway().jvm.org.apache.flink.configuration
    for j_config in j_configs:
        kind = j_config.getOptional(options.RestartStrategyOptions.RESTART_STRATEGY)
        if kind.isPresent():
            return str(kind.get()).strip().lower() not in NO_RESTART
    return any(j_config.getOptional(options.CheckpointingOptions.CHECKPOINTING_INTERVAL)
               .isPresent() for j_config in j_configs)


def apply(j_config: Any, *more_j_configs: Any) -> bool:
    """Give each Python operator of this job its own worker if the job is local, in process
    mode and restarts (see module doc). ``j_config`` is the Java ``Configuration`` of the
    job's environment (the one changed); ``more_j_configs`` are read first (e.g. a table
    environment's own). Returns whether the setting was made."""
    configs = (*more_j_configs, j_config)
    if RuntimeSettings.from_env().shared_python_worker or local_python_mode(j_config) != "process":
        return False
    if any(c.containsKey(MANAGED_MEMORY) for c in configs) or not restarts(*configs):
        return False  # the user's own choice, or nothing to recover
    j_config.setString(MANAGED_MEMORY, "false")
    log.debug("%s=false: a Python worker per Python operator", MANAGED_MEMORY)
    return True


def apply_to_table_env(t_env: Any) -> bool:
    """:func:`apply` for the environment under a ``TableEnvironment`` (its table config,
    which Flink lays over the environment's when the job runs, is read first)."""
    from flink_dl.flink.pyflink_adapter import j_env_config_of_table_env, j_table_config

    return apply(j_env_config_of_table_env(t_env), j_table_config(t_env))
