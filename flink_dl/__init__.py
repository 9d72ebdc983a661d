"""flink-dl: deep learning on Apache Flink, for Python.

An ML cluster (an application master plus groups of nodes in named roles) runs inside a
Flink job, one operator subtask per node, each node's user code in its own process.
"""

from flink_dl.cluster.context import NodeContext
from flink_dl.config import ClusterConfig, Timeouts
from flink_dl.errors import (
    AuthenticationError,
    ClusterFailedError,
    ClusterTimeoutError,
    ConfigError,
    FlinkDLError,
    NodeFailedError,
)
from flink_dl.flink.builder import add_am_role, add_cluster, add_role
from flink_dl.flink.execute import JobOutcome, execute

__all__ = [
    "AuthenticationError",
    "ClusterConfig",
    "ClusterFailedError",
    "ClusterTimeoutError",
    "ConfigError",
    "FlinkDLError",
    "JobOutcome",
    "NodeContext",
    "NodeFailedError",
    "Timeouts",
    "add_am_role",
    "add_cluster",
    "add_role",
    "execute",
]

__version__ = "0.1.0"
