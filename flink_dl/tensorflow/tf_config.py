"""``TF_CONFIG`` from the ML cluster spec (pure: no TensorFlow import)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flink_dl.errors import ConfigError
from flink_dl.tensorflow.config import CHIEF_ROLE, PS_ROLE, WORKER_ROLE

TF_ROLES = (CHIEF_ROLE, WORKER_ROLE, PS_ROLE)


def build_tf_config(cluster_spec: Mapping[str, Sequence[str]], role: str,
                    index: int) -> dict[str, Any]:
    """The ``TF_CONFIG`` of node ``role:index``: the TensorFlow roles of the cluster spec
    (addresses in index order) and this node's task."""
    unknown = sorted(set(cluster_spec) - set(TF_ROLES))
    if unknown:
        raise ConfigError(f"roles {unknown} are not TensorFlow roles {list(TF_ROLES)}")
    if role not in cluster_spec or not 0 <= index < len(cluster_spec[role]):
        raise ConfigError(f"node {role}:{index} is not in the cluster spec {dict(cluster_spec)}")
    cluster = {r: list(cluster_spec[r]) for r in TF_ROLES if cluster_spec.get(r)}
    return {"cluster": cluster, "task": {"type": role, "index": index}}


def is_chief(tf_config: Mapping[str, Any]) -> bool:
    """The chief is the ``chief`` node, or worker 0 when there is none."""
    task = tf_config["task"]
    if CHIEF_ROLE in tf_config["cluster"]:
        return task["type"] == CHIEF_ROLE
    return task["type"] == WORKER_ROLE and task["index"] == 0
