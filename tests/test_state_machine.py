"""Unit: the default cluster rules and the AM's transition guard."""

from __future__ import annotations

import pytest

from flink_dl.cluster.api import (
    ALLOWED_TRANSITIONS,
    ClusterRules,
    ClusterState,
    ClusterView,
    Event,
    EventKind,
    NodeState,
)
from flink_dl.cluster.rules import DefaultRules

S, N = ClusterState, NodeState


def view(state: ClusterState, nodes: dict, daemon=frozenset()) -> ClusterView:
    roles: dict[str, int] = {}
    for role, _ in nodes:
        roles[role] = roles.get(role, 0) + 1
    return ClusterView(state=state, roles=roles, daemon_roles=frozenset(daemon), nodes=nodes)


def test_init_to_running_only_when_all_registered() -> None:
    rules = DefaultRules()
    v = view(S.INIT, {("w", 0): N.REGISTERED, ("w", 1): N.PENDING})
    assert rules.transition(Event(EventKind.NODE_REGISTERED, ("w", 0)), v) is S.INIT
    v.nodes[("w", 1)] = N.REGISTERED
    assert rules.transition(Event(EventKind.NODE_REGISTERED, ("w", 1)), v) is S.RUNNING


def test_finished_when_all_finished() -> None:
    rules = DefaultRules()
    v = view(S.RUNNING, {("w", 0): N.FINISHED, ("w", 1): N.RUNNING})
    assert rules.transition(Event(EventKind.NODE_FINISHED, ("w", 0)), v) is S.RUNNING
    v.nodes[("w", 1)] = N.FINISHED
    assert rules.transition(Event(EventKind.NODE_FINISHED, ("w", 1)), v) is S.FINISHED


def test_daemons_are_stopped_after_workers() -> None:
    rules = DefaultRules()
    v = view(S.RUNNING, {("w", 0): N.FINISHED, ("ps", 0): N.RUNNING}, daemon={"ps"})
    assert not rules.should_stop(("ps", 0), v)
    v.state = rules.transition(Event(EventKind.NODE_FINISHED, ("w", 0)), v)
    assert v.state is S.FINISHING
    assert rules.should_stop(("ps", 0), v)
    v.nodes[("ps", 0)] = N.STOPPED
    assert rules.transition(Event(EventKind.NODE_STOPPED, ("ps", 0)), v) is S.FINISHED


@pytest.mark.parametrize("kind", [EventKind.NODE_FAILED, EventKind.NODE_LOST,
                                  EventKind.REGISTRATION_TIMEOUT])
def test_any_failure_fails_and_stops_everyone(kind: EventKind) -> None:
    rules = DefaultRules()
    v = view(S.RUNNING, {("w", 0): N.FAILED, ("w", 1): N.RUNNING})
    v.state = rules.transition(Event(kind, ("w", 0)), v)
    assert v.state is S.FAILED
    assert rules.should_stop(("w", 1), v)


def test_transition_table_has_room_for_restarts() -> None:
    assert S.RESTARTING in ALLOWED_TRANSITIONS[S.FAILED]
    assert S.INIT in ALLOWED_TRANSITIONS[S.RESTARTING]
    assert not ALLOWED_TRANSITIONS[S.FINISHED]


def test_plugin_rules_can_replace_done(tmp_path) -> None:
    """A plugin whose cluster is done as soon as worker 0 finishes (chief-style rule)."""
    from flink_dl.cluster.registry import get_rules, register_rules

    class ChiefDone(DefaultRules):
        name = "chief-done"

        def work_done(self, view, work_roles):
            return view.nodes.get(("w", 0)) is N.FINISHED

    register_rules("chief-done", ChiefDone)
    rules = get_rules("chief-done")
    assert isinstance(rules, ClusterRules)
    v = view(S.RUNNING, {("w", 0): N.FINISHED, ("w", 1): N.RUNNING})
    assert rules.transition(Event(EventKind.NODE_FINISHED, ("w", 0)), v) is S.FINISHING
