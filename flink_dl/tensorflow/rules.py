"""The TensorFlow plugin's cluster rules: workers first, then the chief, then the ps nodes.

Registered as ``"tensorflow"`` when this module is imported; ``ClusterConfig(plugin=
"flink_dl.tensorflow.rules:TensorFlowRules")`` imports it by reference (what ``TFConfig``
passes). Like ``DefaultRules``, any failure fails the cluster. When every worker has
finished, a separate ``chief`` node is asked to stop (it exports the final model while the
variables still live on the ps nodes); the ``ps`` nodes are asked to stop only once the
chief is done, so nobody loses its variables early.
"""

from __future__ import annotations

from flink_dl.cluster.api import ClusterState, ClusterView, NodeKey
from flink_dl.cluster.registry import register_rules
from flink_dl.cluster.rules import DefaultRules

CHIEF = "chief"
PS = "ps"


class TensorFlowRules(DefaultRules):
    """``DefaultRules`` with an ordered stop: chief before ps."""

    name = "tensorflow"

    def should_stop(self, node: NodeKey, view: ClusterView) -> bool:
        """While finishing: stop a separate chief first, the ps nodes once it is done."""
        if view.state is not ClusterState.FINISHING:
            return super().should_stop(node, view)
        role = node[0]
        if role == PS and CHIEF in view.roles:
            return view.all_done({CHIEF})
        return role in view.daemon_roles


register_rules("tensorflow", TensorFlowRules)
