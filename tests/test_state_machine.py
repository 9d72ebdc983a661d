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


def _reachable() -> list[tuple[ClusterState, EventKind, tuple[NodeState, ...]]]:
    """(state, event, node states of w:0, w:1, ps:0) the AM can feed its rules: nodes
    register only in INIT (and cannot run or finish before the spec is handed out);
    REGISTRATION_TIMEOUT fires only in INIT; late reports reach a finished or failed
    cluster while its nodes are stopping."""
    after_init = [N.REGISTERED, N.RUNNING, N.FINISHED, N.STOPPED, N.FAILED, N.LOST]
    situations = []
    for state in ClusterState:
        if state is S.RESTARTING:  # never entered: Flink restarts the attempt, not the AM
            continue
        if state is S.INIT:
            node_states = [N.PENDING, N.REGISTERED]
            kinds = [EventKind.NODE_REGISTERED, EventKind.NODE_FAILED, EventKind.NODE_LOST,
                     EventKind.REGISTRATION_TIMEOUT]
        else:
            node_states = after_init
            kinds = [k for k in EventKind if k not in (EventKind.NODE_REGISTERED,
                                                       EventKind.REGISTRATION_TIMEOUT)]
        for kind in kinds:
            for a in node_states:
                for b in node_states:
                    for c in node_states:
                        situations.append((state, kind, (a, b, c)))
    return situations


def test_default_rules_only_make_transitions_the_am_accepts() -> None:
    """Every transition DefaultRules makes, in every situation the AM can reach, passes the
    AM's guard (ALLOWED_TRANSITIONS); FINISHED and FAILED are never left."""
    rules = DefaultRules()
    made: set[tuple[ClusterState, ClusterState]] = set()
    for state, kind, (a, b, c) in _reachable():
        v = view(state, {("w", 0): a, ("w", 1): b, ("ps", 0): c}, daemon={"ps"})
        new = rules.transition(Event(kind, ("w", 0)), v)
        if new is not state:
            assert new in ALLOWED_TRANSITIONS[state], (state, kind, (a, b, c), new)
            made.add((state, new))
    assert made == {(S.INIT, S.RUNNING), (S.INIT, S.FAILED), (S.RUNNING, S.FINISHING),
                    (S.RUNNING, S.FINISHED), (S.RUNNING, S.FAILED),
                    (S.FINISHING, S.FINISHED), (S.FINISHING, S.FAILED)}, made


def test_am_refuses_an_illegal_transition(tmp_path) -> None:
    """Rules that jump from INIT straight to FINISHED (no node ever ran) are a bug: the AM
    raises instead of reporting a finished cluster. The same AM with rules that fail the
    cluster on the registration timeout (a legal move) reports the failure."""
    from flink_dl import ClusterConfig, ClusterFailedError
    from flink_dl.cluster.am import AppMaster

    class Jumps(DefaultRules):
        name = "jumps"

        def __init__(self, to: ClusterState) -> None:
            self.to = to

        def transition(self, event, view):
            return self.to if event.kind is EventKind.REGISTRATION_TIMEOUT else view.state

    def am(to: ClusterState) -> AppMaster:
        config = ClusterConfig(roles={"w": 1}, entry=lambda ctx: None,
                               rendezvous_dir=str(tmp_path / to.value),
                               timeouts={"registration": 0.3, "shutdown": 1})
        return AppMaster(config, rules=Jumps(to))

    with pytest.raises(RuntimeError, match="illegal transition INIT -> FINISHED"):
        am(S.FINISHED).run()
    with pytest.raises(ClusterFailedError):
        am(S.FAILED).run()


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
