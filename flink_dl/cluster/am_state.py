"""The AM's state machine: its node records, the cluster state and its transitions.

``ClusterStateMachine`` applies what nodes report (register, heartbeat, finished, stopped,
failed) and what the supervisor sees (a node lost, registration overdue) through the
cluster rules, checks each transition, and builds the cluster spec and the failure report.
One condition variable (``cond``) guards it; the AM's server and supervisor hold it while
they read or change the machine and wait on it for changes. Imports only the cluster's
interfaces, the AM's records, the config and errors.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flink_dl.cluster.am_records import AMSummary, NodeRecord, note_progress
from flink_dl.cluster.api import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    ClusterRules,
    ClusterState,
    ClusterView,
    Event,
    EventKind,
    NodeKey,
    NodeState,
)
from flink_dl.config import ClusterConfig
from flink_dl.errors import (
    ClusterFailedError,
    ClusterNodeFailedError,
    InvalidStateError,
    ProtocolError,
)
from flink_dl.startup import quiet_hangup

log = logging.getLogger("flink_dl.cluster.am")  # the AM logs as one (users filter on it)

_NODE_OUTCOMES = {
    "finished": (NodeState.FINISHED, EventKind.NODE_FINISHED),
    "stopped": (NodeState.STOPPED, EventKind.NODE_STOPPED),
    "failed": (NodeState.FAILED, EventKind.NODE_FAILED),
}


class ClusterStateMachine:
    """One ML cluster attempt as the AM sees it: see the module docstring."""

    def __init__(self, config: ClusterConfig, attempt: int, rules: ClusterRules) -> None:
        self.config = config
        self.attempt = attempt
        self.rules = rules
        self.cond = threading.Condition()
        self.state = ClusterState.INIT
        self.nodes: dict[NodeKey, NodeRecord] = {
            (role, i): NodeRecord(role, i) for role, n in config.roles.items() for i in range(n)
        }
        self.spec: dict[str, list[str]] = {}
        self.timing: dict[str, float] = {}
        #: The AM is closing: registrations waiting for the spec give up.
        self.closing = False
        self.first_failed: NodeKey | None = None

    def view(self) -> ClusterView:
        """What the rules see. Caller holds ``cond``."""
        return ClusterView(
            state=self.state,
            roles=self.config.roles,
            daemon_roles=frozenset(self.config.daemon_roles),
            nodes={k: n.state for k, n in self.nodes.items()},
        )

    def fire(self, event: Event) -> None:
        """Apply ``event`` through the rules. Caller holds ``cond``."""
        old = self.state
        new = self.rules.transition(event, self.view())
        if new is not old:
            if new not in ALLOWED_TRANSITIONS[old]:
                raise InvalidStateError(
                    f"cluster rules {self.rules.name!r} made an illegal transition "
                    f"{old} -> {new} on {event.kind}"
                )
            # a job its client stopped: its nodes were killed on purpose, not news
            level = logging.DEBUG if quiet_hangup.was_stopped(self.config.job_id) \
                else logging.INFO
            log.log(level, "cluster %s attempt %d: %s -> %s (%s %s)", self.config.job_id,
                    self.attempt, old, new, event.kind, event.node or "")
            self.state = new
            self.timing[f"state_{new.value.lower()}"] = time.time()
            if new is ClusterState.RUNNING:
                self.spec = self._build_spec()
        if (
            event.kind is EventKind.NODE_RUNNING
            and "all_running" not in self.timing
            and all(n.state is NodeState.RUNNING or n.state.done for n in self.nodes.values())
        ):
            self.timing["all_running"] = time.time()
        self.cond.notify_all()

    def _build_spec(self) -> dict[str, list[str]]:
        spec: dict[str, list[str]] = {role: [""] * n for role, n in self.config.roles.items()}
        for (role, index), node in self.nodes.items():
            spec[role][index] = node.address or ""
        return spec

    def mark_lost(self, key: NodeKey, error: str) -> None:
        """Node ``key`` is lost (``error`` says how). Caller holds ``cond``."""
        node = self.nodes[key]
        node.state = NodeState.LOST
        node.error = error
        self.fire(Event(EventKind.NODE_LOST, key, error))

    def connection_ended(self, key: NodeKey | None) -> None:
        """A node's control connection ended: the node is lost unless it was done or the
        cluster is. Caller holds ``cond``."""
        node = self.nodes.get(key) if key else None
        if key and node and not node.state.done and self.state not in TERMINAL_STATES:
            self.mark_lost(key, "control connection closed before the node finished")
        self.cond.notify_all()

    # ------------------------------------------------------------------ messages
    def handle(self, msg: dict[str, Any]) -> tuple[NodeKey, dict[str, Any]]:
        """Apply one control message of a node; returns the node and the reply."""
        key = self._node_key(msg)
        kind = msg["type"]
        with self.cond:
            node = self.nodes[key]
            node.last_seen = time.monotonic()
            if kind == "register":
                return key, self._register(node, msg)
            if kind == "heartbeat":
                note_progress(node, msg)
                if msg.get("running") and node.state is NodeState.REGISTERED:
                    node.state = NodeState.RUNNING
                    self.fire(Event(EventKind.NODE_RUNNING, key))
            elif kind in _NODE_OUTCOMES:
                if not node.state.done:
                    node.state, event_kind = _NODE_OUTCOMES[kind]
                    node.result = msg.get("result")
                    if kind == "failed":
                        node.error = str(msg.get("error", "unknown error"))
                        if self.first_failed is None:
                            self.first_failed = key
                    self.fire(Event(event_kind, key, node.error or ""))
            else:
                raise ProtocolError(f"unknown control message type {kind!r}")
            return key, {"type": "status", "state": self.state.value,
                         "stop": self.rules.should_stop(key, self.view())}

    def _register(self, node: NodeRecord, msg: dict[str, Any]) -> dict[str, Any]:
        address = msg.get("address")
        if not isinstance(address, str) or ":" not in address:
            raise ProtocolError(f"node {node.role}:{node.index} registered without host:port")
        if node.state is not NodeState.PENDING:
            return {"type": "error",
                    "message": f"node {node.role}:{node.index} is already registered"}
        if self.state is not ClusterState.INIT:
            return {"type": "error", "message": f"cluster is {self.state}, not accepting nodes"}
        node.address, node.pid, node.host = address, msg.get("pid"), msg.get("host")
        node.state = NodeState.REGISTERED
        log.info("node %s:%d registered at %s", node.role, node.index, address)
        if "first_registration" not in self.timing:
            self.timing["first_registration"] = time.time()
        self.fire(Event(EventKind.NODE_REGISTERED, (node.role, node.index)))
        while self.state is ClusterState.INIT and not self.closing:
            self.cond.wait(timeout=0.2)
            node.last_seen = time.monotonic()
        if self.state is not ClusterState.RUNNING:
            return {"type": "error", "message": f"cluster went to {self.state} during "
                    "registration: " + self.failure_message()}
        return {"type": "spec", "cluster_spec": self.spec, "state": self.state.value}

    def _node_key(self, msg: dict[str, Any]) -> NodeKey:
        role, index = msg.get("role"), msg.get("index")
        if not isinstance(role, str) or not isinstance(index, int) or (role, index) not in (
            self.nodes
        ):
            raise ProtocolError(f"message from unknown node {role}:{index}")
        return role, index

    # ------------------------------------------------------------------- reports
    def summary(self, refused_connections: int) -> AMSummary:
        """A snapshot: state, spec, nodes and timings."""
        with self.cond:
            return AMSummary(
                job_id=self.config.job_id,
                attempt=self.attempt,
                state=self.state,
                cluster_spec={k: list(v) for k, v in self.spec.items()},
                nodes={f"{r}:{i}": n.state.value for (r, i), n in self.nodes.items()},
                timing=dict(self.timing),
                refused_connections=refused_connections,
            )

    def failure(self) -> ClusterFailedError:
        """The cluster's error: led by the report of the node that failed first (its
        entry's traceback and stderr tail), if a node failed."""
        with self.cond:
            first = self.first_failed
            node = self.nodes[first] if first is not None else None
            if node is None or not node.error:
                return ClusterFailedError(self.failure_message())
            lines = [node.error.rstrip("\n"),
                     f"(the ML cluster of job {self.config.job_id} attempt {self.attempt} "
                     "FAILED on it; other nodes:"]
            lines += [f"  ML node {role}:{index} {other.state.value}"
                      + (f": {other.error.splitlines()[0]}" if other.error else "")
                      for (role, index), other in self.nodes.items() if (role, index) != first]
            return ClusterNodeFailedError("\n".join(lines) + ")")

    def failure_message(self) -> str:
        """Every node's error, one line each."""
        with self.cond:
            lines = [f"ML cluster of job {self.config.job_id} attempt {self.attempt} FAILED:"]
            for (role, index), node in self.nodes.items():
                if node.error:
                    lines.append(f"  ML node {role}:{index} (role {role!r}, index {index}) "
                                 f"{node.state.value}: {node.error}")
            return "\n".join(lines)
