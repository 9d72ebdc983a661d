"""The ML clusters added to each Java ``StreamExecutionEnvironment`` in this client, so
that ``execute``/``cleanup`` and ``execute_and_collect`` find them from any Python wrapper
of that environment. ``flink.builder`` registers its ``MLCluster`` handles here.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

from flink_dl.config import ClusterConfig
from flink_dl.flink.pyflink_adapter import j_env


class RegisteredCluster(Protocol):
    """What the registry needs of a cluster handle (``flink.builder.MLCluster``)."""

    config: ClusterConfig


#: The ML clusters of each Java ``StreamExecutionEnvironment`` (job id -> ``MLCluster``), so
#: that ``execute``/``cleanup`` find them from any Python wrapper of that environment: a
#: pipeline's model stage builds its cluster on a wrapper made from the Table's environment,
#: not on the user's. Keyed by the Java object's identity hash, checked with ``equals``.
#: Entries live as long as this client process (one per environment that built a cluster).
_CLUSTERS: dict[int, list[tuple[Any, dict[str, RegisteredCluster]]]] = {}
_CLUSTERS_LOCK = threading.Lock()


def clusters_of(env: StreamExecutionEnvironment) -> list[RegisteredCluster]:
    """The ML clusters added to ``env`` (any Python wrapper of its Java environment) so far,
    in order."""
    return list(clusters_of_java_env(env, create=False).values())


def clusters_of_java_env(env: StreamExecutionEnvironment,
                         create: bool) -> dict[str, RegisteredCluster]:
    """The live registry entry (job id -> cluster) of ``env``'s Java environment; an empty
    dict, not kept, when it has none and ``create`` is false."""
    java_env = j_env(env)
    key = get_gateway().jvm.System.identityHashCode(java_env)
    with _CLUSTERS_LOCK:
        for j_known, clusters in _CLUSTERS.get(key, []):
            if j_known.equals(java_env):
                return clusters
        if not create:
            return {}
        clusters = {}
        _CLUSTERS.setdefault(key, []).append((java_env, clusters))
        return clusters


def has_clusters(java_env: Any) -> bool:
    """Whether ML clusters were added to the Java ``StreamExecutionEnvironment``
    ``java_env``."""
    key = get_gateway().jvm.System.identityHashCode(java_env)
    with _CLUSTERS_LOCK:
        return any(clusters and j_known.equals(java_env)
                   for j_known, clusters in _CLUSTERS.get(key, []))


def cluster_configs_of(env: StreamExecutionEnvironment) -> list[ClusterConfig]:
    """The configs of the ML clusters added to ``env`` so far."""
    return [cluster.config for cluster in clusters_of(env)]
