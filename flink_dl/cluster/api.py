"""The ML cluster's interfaces: states, events, the rules (state machine) and the rendezvous store.

Framework plugins extend the cluster by registering their own ``ClusterRules``
(``flink_dl.cluster.registry.register_rules``); rendezvous backends by registering a
``RendezvousStore`` factory (``register_store``) or a whole strategy
(``register_rendezvous``, ``flink_dl.cluster.rendezvous_strategy``).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ClusterState(enum.StrEnum):
    """Lifecycle of one ML cluster attempt, owned by the AM."""

    INIT = "INIT"  # waiting for every node to register
    RUNNING = "RUNNING"  # spec handed out, entries running
    FINISHING = "FINISHING"  # the rules said "done"; daemon nodes are being stopped
    FINISHED = "FINISHED"  # every node finished or was stopped on purpose
    FAILED = "FAILED"  # a node failed or was lost; every node is told to stop
    RESTARTING = "RESTARTING"  # reserved for failover: a new attempt will follow


#: Transitions the AM accepts; anything else returned by rules is a bug in the rules.
ALLOWED_TRANSITIONS: Mapping[ClusterState, frozenset[ClusterState]] = {
    ClusterState.INIT: frozenset({ClusterState.RUNNING, ClusterState.FAILED}),
    ClusterState.RUNNING: frozenset(
        {ClusterState.FINISHING, ClusterState.FINISHED, ClusterState.FAILED,
         ClusterState.RESTARTING}
    ),
    ClusterState.FINISHING: frozenset({ClusterState.FINISHED, ClusterState.FAILED}),
    ClusterState.RESTARTING: frozenset({ClusterState.INIT, ClusterState.FAILED}),
    ClusterState.FINISHED: frozenset(),
    ClusterState.FAILED: frozenset({ClusterState.RESTARTING}),
}

TERMINAL_STATES = frozenset({ClusterState.FINISHED, ClusterState.FAILED})


class NodeState(enum.StrEnum):
    """Lifecycle of one node as the AM sees it."""

    PENDING = "PENDING"  # not registered yet
    REGISTERED = "REGISTERED"
    RUNNING = "RUNNING"  # entry process started (reported by heartbeat)
    FINISHED = "FINISHED"  # entry returned
    STOPPED = "STOPPED"  # entry stopped on the AM's request
    FAILED = "FAILED"  # entry raised or exited non-zero
    LOST = "LOST"  # heartbeats stopped

    @property
    def done(self) -> bool:
        return self in (NodeState.FINISHED, NodeState.STOPPED, NodeState.FAILED, NodeState.LOST)


class EventKind(enum.StrEnum):
    NODE_REGISTERED = "NODE_REGISTERED"
    NODE_RUNNING = "NODE_RUNNING"
    NODE_FINISHED = "NODE_FINISHED"
    NODE_STOPPED = "NODE_STOPPED"
    NODE_FAILED = "NODE_FAILED"
    NODE_LOST = "NODE_LOST"
    REGISTRATION_TIMEOUT = "REGISTRATION_TIMEOUT"


NodeKey = tuple[str, int]


@dataclass(frozen=True)
class Event:
    """Something that happened to the cluster; fed to ``ClusterRules.transition``."""

    kind: EventKind
    node: NodeKey | None = None
    detail: str = ""


@dataclass
class ClusterView:
    """What the rules may look at: roles, daemon roles and each node's state."""

    state: ClusterState
    roles: Mapping[str, int]
    daemon_roles: frozenset[str]
    nodes: dict[NodeKey, NodeState] = field(default_factory=dict)

    def all_registered(self) -> bool:
        return all(s is not NodeState.PENDING for s in self.nodes.values())

    def all_done(self, roles: set[str] | frozenset[str] | None = None) -> bool:
        return all(s.done for (r, _), s in self.nodes.items() if roles is None or r in roles)


class ClusterRules(ABC):
    """The AM's state machine: how events move the cluster between ``ClusterState``s.

    Plugins subclass this (or ``DefaultRules``) to change what "done" means, e.g.
    TensorFlow: finished when every worker finished, then stop the ps nodes.
    """

    name: str = "abstract"

    @abstractmethod
    def transition(self, event: Event, view: ClusterView) -> ClusterState:
        """Return the cluster's next state after ``event`` (may be ``view.state``)."""

    @abstractmethod
    def should_stop(self, node: NodeKey, view: ClusterView) -> bool:
        """Whether the AM tells ``node`` to stop its entry now."""


class RendezvousStore(ABC):
    """Where the AM publishes its address and nodes look it up, per job and attempt."""

    @abstractmethod
    def publish(self, key: str, value: Mapping[str, Any]) -> None:
        """Publish ``value`` under ``key`` atomically (readers never see half of it)."""

    @abstractmethod
    def lookup(self, key: str) -> dict[str, Any] | None:
        """Return the value under ``key`` or ``None`` if it is not there (yet)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is absent)."""

    @abstractmethod
    def close(self) -> None:
        """Release the store; remove the job's scope once it is empty."""
