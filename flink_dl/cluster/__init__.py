"""The ML cluster itself, independent of Flink and of any framework: config checks, the
AM and its state machine (rules), the node runner (AM client, entry process supervision,
watch loop), the node context, the control-plane protocol, rendezvous and registries.

May import ``flink_dl.config``, ``channel``, ``models``, ``startup``, ``settings`` and
``errors``; never Flink's adapter or a framework (tests/test_layers.py).
"""

from __future__ import annotations

from flink_dl.lazy import lazy_exports

#: The cluster's extension points (attributes load lazily, like the top-level package).
_EXPORTS = {
    "NodeContext": "flink_dl.cluster.context",
    "ClusterRules": "flink_dl.cluster.api",
    "register_rules": "flink_dl.cluster.registry",
    "register_store": "flink_dl.cluster.registry",
    "register_rendezvous": "flink_dl.cluster.registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("flink_dl.cluster", _EXPORTS, globals())
