"""flink-dl: deep learning on Apache Flink, for Python.

An ML cluster (an application master plus groups of nodes in named roles) runs inside a
Flink job, one operator subtask per node, each node's user code in its own process.

Importing it has no side effects: call ``flink_dl.use_jvm_archive()`` before the script's
first ``StreamExecutionEnvironment.get_execution_environment()`` to start PyFlink's JVM
from the class archive that ``flink-dl jvm-archive`` built (faster start-up).

Attributes load lazily (PEP 562): Flink's Python workers import submodules from several
threads at once, and an eager package ``__init__`` that imports them all would make those
imports deadlock on each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flink_dl.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "NodeContext": "flink_dl.cluster.context",
    "ClusterConfig": "flink_dl.config",
    "ClusterSettings": "flink_dl.config",
    "Timeouts": "flink_dl.config",
    "RestartPolicy": "flink_dl.config",
    "AuthenticationError": "flink_dl.errors",
    "ClusterFailedError": "flink_dl.errors",
    "ClusterTimeoutError": "flink_dl.errors",
    "ConfigError": "flink_dl.errors",
    "FlinkDLError": "flink_dl.errors",
    "NodeFailedError": "flink_dl.errors",
    "MLCluster": "flink_dl.flink.builder",
    "ml_cluster": "flink_dl.flink.builder",
    "translate_errors": "flink_dl.flink.failures",
    "add_am_role": "flink_dl.flink.builder",
    "add_cluster": "flink_dl.flink.builder",
    "add_role": "flink_dl.flink.builder",
    "JobOutcome": "flink_dl.flink.execute",
    "execute": "flink_dl.flink.execute",
    "cleanup": "flink_dl.flink.execute",
    "stop_with_drain": "flink_dl.flink.execute",
    "restored_environ": "flink_dl.startup.client_env",
    "without_loopback_leftovers": "flink_dl.startup.client_env",
    "use_jvm_archive": "flink_dl.startup.jvm_archive",
    "RuntimeSettings": "flink_dl.settings",
}

__all__ = [  # noqa: RUF022 - grouped like _EXPORTS
    "NodeContext", "ClusterConfig", "ClusterSettings", "Timeouts", "RestartPolicy",
    "AuthenticationError",
    "ClusterFailedError", "ClusterTimeoutError", "ConfigError", "FlinkDLError",
    "NodeFailedError", "MLCluster", "ml_cluster", "translate_errors", "add_am_role",
    "add_cluster", "add_role", "JobOutcome", "execute", "cleanup", "stop_with_drain",
    "restored_environ", "without_loopback_leftovers", "use_jvm_archive", "RuntimeSettings",
]


__getattr__, __dir__ = lazy_exports("flink_dl", _EXPORTS, globals())


if TYPE_CHECKING:
    from flink_dl.cluster.context import NodeContext
    from flink_dl.config import ClusterConfig, ClusterSettings, RestartPolicy, Timeouts
    from flink_dl.errors import (
        AuthenticationError,
        ClusterFailedError,
        ClusterTimeoutError,
        ConfigError,
        FlinkDLError,
        NodeFailedError,
    )
    from flink_dl.flink.builder import MLCluster, add_am_role, add_cluster, add_role, ml_cluster
    from flink_dl.flink.execute import JobOutcome, cleanup, execute, stop_with_drain
    from flink_dl.flink.failures import translate_errors
    from flink_dl.settings import RuntimeSettings
    from flink_dl.startup.client_env import restored_environ, without_loopback_leftovers
    from flink_dl.startup.jvm_archive import use_jvm_archive
