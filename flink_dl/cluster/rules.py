"""The default cluster rules: done when every non-daemon node finished; any failure fails all."""

from __future__ import annotations

from flink_dl.cluster.api import (
    ClusterRules,
    ClusterState,
    ClusterView,
    Event,
    EventKind,
    NodeKey,
    NodeState,
)


class DefaultRules(ClusterRules):
    """INIT -> RUNNING -> (FINISHING ->) FINISHED, and FAILED on any failure or loss.

    * RUNNING once every node of every role has registered.
    * When every node outside ``daemon_roles`` has finished, daemon nodes (e.g. ``ps``)
      are told to stop: FINISHING, then FINISHED when they have stopped.
    * A failed or lost node, or a registration timeout, fails the cluster; every node is
      told to stop.
    """

    name = "default"

    def transition(self, event: Event, view: ClusterView) -> ClusterState:
        state = view.state
        if event.kind in (EventKind.NODE_FAILED, EventKind.NODE_LOST,
                          EventKind.REGISTRATION_TIMEOUT):
            return ClusterState.FAILED if state is not ClusterState.FINISHED else state
        if state is ClusterState.INIT and view.all_registered():
            state = ClusterState.RUNNING
        if state in (ClusterState.RUNNING, ClusterState.FINISHING):
            work_roles = frozenset(view.roles) - view.daemon_roles
            if view.all_done():
                return ClusterState.FINISHED
            if self.work_done(view, work_roles):
                return ClusterState.FINISHING
        return state

    def work_done(self, view: ClusterView, work_roles: frozenset[str]) -> bool:
        """Whether the cluster's work is done (hook for plugins); default: all work roles."""
        return all(
            s in (NodeState.FINISHED, NodeState.STOPPED)
            for (role, _), s in view.nodes.items()
            if role in work_roles
        )

    def should_stop(self, node: NodeKey, view: ClusterView) -> bool:
        if view.state in (ClusterState.FAILED, ClusterState.FINISHED):
            return True
        return view.state is ClusterState.FINISHING and node[0] in view.daemon_roles
