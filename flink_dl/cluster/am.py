"""The application master (AM): registration, cluster spec, heartbeats and the state machine.

One AM per ML cluster attempt. It listens on ``bind_host`` (port chosen by the OS),
makes its address known (``am_address``: the Flink operator emits it into the dataflow;
with a rendezvous store it is published under ``am-<attempt>``), and serves each
authenticated node connection in a thread. ``run()`` blocks until the cluster reaches a
terminal state and every node has acknowledged it (or ``timeouts.shutdown`` passed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

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
    RendezvousStore,
)
from flink_dl.cluster.net import LOOPBACK, am_hosts
from flink_dl.cluster.protocol import recv_msg, send_msg, server_handshake
from flink_dl.cluster.registry import get_rules, get_store_factory
from flink_dl.config import DATAFLOW_RENDEZVOUS, ClusterConfig
from flink_dl.errors import (
    AuthenticationError,
    ClusterFailedError,
    ClusterNodeFailedError,
    ProtocolError,
)

log = logging.getLogger(__name__)


def am_key(attempt: int) -> str:
    """Rendezvous key under which the AM of ``attempt`` publishes its address."""
    return f"am-{attempt}"


@dataclass(frozen=True)
class AMAddress:
    """Where the AM of one job attempt listens: every host address it can be dialled at
    (in the order to try them) and its port. Travels as JSON, never pickled."""

    job_id: str
    attempt: int
    hosts: tuple[str, ...]
    port: int

    KIND = "flink-dl-am-address"

    def to_mapping(self) -> dict[str, Any]:
        return {"kind": self.KIND, "job_id": self.job_id, "attempt": self.attempt,
                "hosts": list(self.hosts), "port": self.port}

    def to_json(self) -> str:
        return json.dumps(self.to_mapping())

    @classmethod
    def from_mapping(cls, value: dict[str, Any]) -> AMAddress:
        """Parse a mapping made by ``to_mapping``; ``ProtocolError`` if it is not one."""
        try:
            hosts = value["hosts"]
            if not isinstance(hosts, list) or not hosts or \
                    not all(isinstance(h, str) and h for h in hosts):
                raise ValueError(f"bad hosts {hosts!r}")
            return cls(str(value["job_id"]), int(value["attempt"]), tuple(hosts),
                       int(value["port"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"not an AM address: {value!r} ({exc})") from None

    @classmethod
    def from_json(cls, text: str) -> AMAddress:
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"not an AM address: {text!r:.200} ({exc})") from None
        if not isinstance(value, dict) or value.get("kind") != cls.KIND:
            raise ProtocolError(f"not an AM address: {text!r:.200}")
        return cls.from_mapping(value)


@dataclass
class NodeRecord:
    """The AM's view of one node: its state, address, last heartbeat and outcome."""

    role: str
    index: int
    state: NodeState = NodeState.PENDING
    address: str | None = None
    host: str | None = None
    pid: int | None = None
    last_seen: float = 0.0
    error: str | None = None
    result: Any = None
    #: From the node's heartbeats: rows its entry read, seconds since its last progress,
    #: and what it waits on Flink for (``"input"``/``"output"``), if anything.
    rows_read: int = 0
    progress_age: float = 0.0
    waiting: str | None = None

    def status_line(self) -> str:
        """One line of the node's status, for the AM's log."""
        waiting = f", waiting for {self.waiting}" if self.waiting else ""
        return (f"ML node {self.role}:{self.index} (role {self.role!r}, index {self.index}): "
                f"{self.state.value}, {self.rows_read} rows read, {self.progress_age:.0f}s "
                f"since its last progress{waiting}")


@dataclass
class AMSummary:
    """What the AM reports when the cluster attempt ends."""

    job_id: str
    attempt: int
    state: ClusterState
    cluster_spec: dict[str, list[str]]
    nodes: dict[str, str]
    timing: dict[str, float] = field(default_factory=dict)
    refused_connections: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "am",
            "job_id": self.job_id,
            "attempt": self.attempt,
            "state": self.state.value,
            "cluster_spec": self.cluster_spec,
            "nodes": self.nodes,
            "timing": self.timing,
            "refused_connections": self.refused_connections,
        }


class AppMaster:
    """Owns one ML cluster attempt: see the module docstring."""

    def __init__(
        self,
        config: ClusterConfig,
        attempt: int = 0,
        rules: ClusterRules | None = None,
        store: RendezvousStore | None = None,
    ) -> None:
        self.config = config
        self.attempt = attempt
        self.timeouts = config.timeout
        self.rules = rules or get_rules(config.plugin)
        #: Where the AM publishes its address; ``None`` when it travels through the
        #: dataflow (``rendezvous="dataflow"``, the operator emits ``am_address``).
        self.store = store or (
            None if config.rendezvous == DATAFLOW_RENDEZVOUS
            else get_store_factory(config.rendezvous)(config.job_id,
                                                      {"dir": config.rendezvous_dir}))
        self._cond = threading.Condition()
        self._state = ClusterState.INIT
        self._nodes: dict[NodeKey, NodeRecord] = {
            (role, i): NodeRecord(role, i) for role, n in config.roles.items() for i in range(n)
        }
        self._spec: dict[str, list[str]] = {}
        self._connections: set[socket.socket] = set()
        self._refused = 0
        self._timing: dict[str, float] = {}
        self._server: socket.socket | None = None
        self._closing = False
        self._first_failed: NodeKey | None = None
        self.address: tuple[str, int] | None = None
        #: Every address the AM can be dialled at (set by ``start``).
        self.am_address: AMAddress | None = None

    # ----------------------------------------------------------------- public API
    @property
    def state(self) -> ClusterState:
        """The cluster's current state."""
        with self._cond:
            return self._state

    @property
    def refused_connections(self) -> int:
        """Connections refused by the handshake (wrong secret, job or attempt)."""
        with self._cond:
            return self._refused

    def start(self) -> tuple[str, int]:
        """Bind, start serving, and publish the address; returns (advertised host, port)."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server = server
        try:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            bind_host = self.config.bind_host or LOOPBACK
            server.bind((bind_host, 0))
            server.listen(max(16, 2 * self.config.total_nodes))
            server.settimeout(0.2)
            hosts = am_hosts(bind_host, self.config.advertise_host)
            port = server.getsockname()[1]
            self.address = (hosts[0], port)
            self.am_address = AMAddress(self.config.job_id, self.attempt, tuple(hosts), port)
            self._timing["am_started"] = time.time()
            threading.Thread(target=self._accept_loop, name="flink-dl-am-accept",
                             daemon=True).start()
            if self.store is not None:
                for old in range(self.attempt):  # left by AMs of earlier, killed attempts
                    self.store.delete(am_key(old))
                self.store.publish(am_key(self.attempt),
                                   self.am_address.to_mapping() | {"pid": os.getpid()})
        except BaseException:
            self.close()  # stops the accept loop, closes the socket
            raise
        log.info("AM of job %s attempt %d listening on %s (port %d)",
                 self.config.job_id, self.attempt, ", ".join(hosts), port)
        return self.address

    def run(self) -> AMSummary:
        """Drive the cluster to a terminal state; raise ``ClusterFailedError`` if it failed."""
        if self._server is None:
            self.start()
        try:
            self._supervise()
            self._await_nodes_leaving()
        finally:
            self.close()
        summary = self.summary()
        if summary.state is ClusterState.FAILED:
            raise self._failure()
        return summary

    def summary(self) -> AMSummary:
        """A snapshot of the cluster: state, nodes, failures and timings."""
        with self._cond:
            return AMSummary(
                job_id=self.config.job_id,
                attempt=self.attempt,
                state=self._state,
                cluster_spec={k: list(v) for k, v in self._spec.items()},
                nodes={f"{r}:{i}": n.state.value for (r, i), n in self._nodes.items()},
                timing=dict(self._timing),
                refused_connections=self._refused,
            )

    def close(self) -> None:
        """Stop serving, drop connections, and remove the published address."""
        with self._cond:
            self._closing = True
            connections = list(self._connections)
            self._cond.notify_all()
        if self._server is not None:
            self._server.close()
        for conn in connections:
            _close_quietly(conn)
        if self.store is None:
            return
        try:
            self.store.delete(am_key(self.attempt))
        finally:
            self.store.close()

    # ------------------------------------------------------------ state machine
    def _view(self) -> ClusterView:
        return ClusterView(
            state=self._state,
            roles=self.config.roles,
            daemon_roles=frozenset(self.config.daemon_roles),
            nodes={k: n.state for k, n in self._nodes.items()},
        )

    def _fire(self, event: Event) -> None:
        """Apply ``event`` through the rules. Caller holds ``self._cond``."""
        old = self._state
        new = self.rules.transition(event, self._view())
        if new is not old:
            if new not in ALLOWED_TRANSITIONS[old]:
                raise RuntimeError(
                    f"cluster rules {self.rules.name!r} made an illegal transition "
                    f"{old} -> {new} on {event.kind}"
                )
            log.info("cluster %s attempt %d: %s -> %s (%s %s)", self.config.job_id,
                     self.attempt, old, new, event.kind, event.node or "")
            self._state = new
            self._timing[f"state_{new.value.lower()}"] = time.time()
            if new is ClusterState.RUNNING:
                self._spec = self._build_spec()
        if (
            event.kind is EventKind.NODE_RUNNING
            and "all_running" not in self._timing
            and all(n.state is NodeState.RUNNING or n.state.done for n in self._nodes.values())
        ):
            self._timing["all_running"] = time.time()
        self._cond.notify_all()

    def _build_spec(self) -> dict[str, list[str]]:
        spec: dict[str, list[str]] = {role: [""] * n for role, n in self.config.roles.items()}
        for (role, index), node in self._nodes.items():
            spec[role][index] = node.address or ""
        return spec

    def _supervise(self) -> None:
        registration_deadline = time.monotonic() + self.timeouts.registration
        next_status = time.monotonic() + self.timeouts.status_interval
        with self._cond:
            while self._state not in TERMINAL_STATES:
                now = time.monotonic()
                if now >= next_status:
                    next_status = now + self.timeouts.status_interval
                    self._log_stalled_nodes()
                if self._state is ClusterState.INIT and now > registration_deadline:
                    missing = [k for k, n in self._nodes.items() if n.state is NodeState.PENDING]
                    for key in missing:
                        self._nodes[key].error = (
                            "did not register within timeouts.registration="
                            f"{self.timeouts.registration}s")
                    self._fire(Event(EventKind.REGISTRATION_TIMEOUT, detail=(
                        f"{len(missing)} node(s) did not register in time")))
                    continue
                for key, node in self._nodes.items():
                    if node.state in (NodeState.REGISTERED, NodeState.RUNNING) and (
                        now - node.last_seen > self.timeouts.heartbeat_timeout
                    ):
                        node.state = NodeState.LOST
                        node.error = (f"no heartbeat for {now - node.last_seen:.1f}s "
                                      f"(timeouts.heartbeat_timeout={self.timeouts.heartbeat_timeout})")
                        log.warning("node %s:%d lost: %s", *key, node.error)
                        self._fire(Event(EventKind.NODE_LOST, key, node.error))
                self._cond.wait(timeout=0.1)

    def _log_stalled_nodes(self) -> None:
        """One status line per running node without progress for
        ``timeouts.status_interval`` (a hung entry is visible long before
        ``timeouts.progress`` fails it). Caller holds ``self._cond``."""
        limit = self.timeouts.progress
        for node in self._nodes.values():
            if node.state is NodeState.RUNNING and (
                    node.progress_age >= self.timeouts.status_interval):
                log.warning("%s (timeouts.progress=%s)", node.status_line(),
                            f"{limit}s" if limit is not None else "off")

    def _await_nodes_leaving(self) -> None:
        deadline = time.monotonic() + self.timeouts.shutdown
        with self._cond:
            while self._connections and time.monotonic() < deadline:
                self._cond.wait(timeout=0.1)
            if self._connections:
                log.warning("AM: %d node connection(s) still open after timeouts.shutdown=%ss",
                            len(self._connections), self.timeouts.shutdown)

    def _failure(self) -> ClusterFailedError:
        """The cluster's error: led by the report of the node that failed first (its
        entry's traceback and stderr tail), if a node failed."""
        with self._cond:
            first = self._first_failed
            node = self._nodes[first] if first is not None else None
            if node is None or not node.error:
                return ClusterFailedError(self._failure_message())
            lines = [node.error.rstrip("\n"),
                     f"(the ML cluster of job {self.config.job_id} attempt {self.attempt} "
                     "FAILED on it; other nodes:"]
            lines += [f"  ML node {role}:{index} {other.state.value}"
                      + (f": {other.error.splitlines()[0]}" if other.error else "")
                      for (role, index), other in self._nodes.items() if (role, index) != first]
            return ClusterNodeFailedError("\n".join(lines) + ")")

    def _failure_message(self) -> str:
        with self._cond:
            lines = [f"ML cluster of job {self.config.job_id} attempt {self.attempt} FAILED:"]
            for (role, index), node in self._nodes.items():
                if node.error:
                    lines.append(f"  ML node {role}:{index} (role {role!r}, index {index}) "
                                 f"{node.state.value}: {node.error}")
            return "\n".join(lines)

    # ------------------------------------------------------------------ serving
    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._closing:
            try:
                conn, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True,
                             name=f"flink-dl-am-conn-{peer[1]}").start()

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(self.timeouts.request)
        try:
            server_handshake(conn, self.config.secret, self.config.job_id, self.attempt)
        except (AuthenticationError, ProtocolError, OSError) as exc:
            with self._cond:
                self._refused += 1
            log.warning("AM refused connection from %s: %s", peer, exc)
            _close_quietly(conn)
            return
        with self._cond:
            if self._closing:
                _close_quietly(conn)
                return
            self._connections.add(conn)
        key: NodeKey | None = None
        conn.settimeout(self.timeouts.heartbeat_timeout + self.timeouts.request)
        try:
            while True:
                msg = recv_msg(conn)
                if msg["type"] == "bye":
                    key = None
                    break
                key, reply = self._handle(msg)
                send_msg(conn, reply)
        except (ConnectionError, TimeoutError, OSError, ProtocolError) as exc:
            if not self._closing:
                log.debug("AM connection from %s ended: %s", peer, exc)
        finally:
            with self._cond:
                self._connections.discard(conn)
                node = self._nodes.get(key) if key else None
                if node and not node.state.done and self._state not in TERMINAL_STATES:
                    node.state = NodeState.LOST
                    node.error = "control connection closed before the node finished"
                    self._fire(Event(EventKind.NODE_LOST, key, node.error))
                self._cond.notify_all()
            _close_quietly(conn)

    def _handle(self, msg: dict[str, Any]) -> tuple[NodeKey, dict[str, Any]]:
        key = self._node_key(msg)
        kind = msg["type"]
        with self._cond:
            node = self._nodes[key]
            node.last_seen = time.monotonic()
            if kind == "register":
                return key, self._register(node, msg)
            if kind == "heartbeat":
                _note_progress(node, msg)
                if msg.get("running") and node.state is NodeState.REGISTERED:
                    node.state = NodeState.RUNNING
                    self._fire(Event(EventKind.NODE_RUNNING, key))
            elif kind in ("finished", "stopped", "failed"):
                if not node.state.done:
                    node.state = {"finished": NodeState.FINISHED, "stopped": NodeState.STOPPED,
                                  "failed": NodeState.FAILED}[kind]
                    node.result = msg.get("result")
                    if kind == "failed":
                        node.error = str(msg.get("error", "unknown error"))
                        if self._first_failed is None:
                            self._first_failed = key
                    event_kind = {"finished": EventKind.NODE_FINISHED,
                                  "stopped": EventKind.NODE_STOPPED,
                                  "failed": EventKind.NODE_FAILED}[kind]
                    self._fire(Event(event_kind, key, node.error or ""))
            else:
                raise ProtocolError(f"unknown control message type {kind!r}")
            return key, self._status_reply(key)

    def _status_reply(self, key: NodeKey) -> dict[str, Any]:
        return {"type": "status", "state": self._state.value,
                "stop": self.rules.should_stop(key, self._view())}

    def _register(self, node: NodeRecord, msg: dict[str, Any]) -> dict[str, Any]:
        address = msg.get("address")
        if not isinstance(address, str) or ":" not in address:
            raise ProtocolError(f"node {node.role}:{node.index} registered without host:port")
        if node.state is not NodeState.PENDING:
            return {"type": "error",
                    "message": f"node {node.role}:{node.index} is already registered"}
        if self._state is not ClusterState.INIT:
            return {"type": "error", "message": f"cluster is {self._state}, not accepting nodes"}
        node.address, node.pid, node.host = address, msg.get("pid"), msg.get("host")
        node.state = NodeState.REGISTERED
        log.info("node %s:%d registered at %s", node.role, node.index, address)
        if "first_registration" not in self._timing:
            self._timing["first_registration"] = time.time()
        self._fire(Event(EventKind.NODE_REGISTERED, (node.role, node.index)))
        while self._state is ClusterState.INIT and not self._closing:
            self._cond.wait(timeout=0.2)
            node.last_seen = time.monotonic()
        if self._state is not ClusterState.RUNNING:
            return {"type": "error", "message": f"cluster went to {self._state} during "
                    "registration: " + self._failure_message()}
        return {"type": "spec", "cluster_spec": self._spec, "state": self._state.value}

    def _node_key(self, msg: dict[str, Any]) -> NodeKey:
        role, index = msg.get("role"), msg.get("index")
        if not isinstance(role, str) or not isinstance(index, int) or (role, index) not in (
            self._nodes
        ):
            raise ProtocolError(f"message from unknown node {role}:{index}")
        return role, index


def _note_progress(node: NodeRecord, msg: dict[str, Any]) -> None:
    rows, age, waiting = msg.get("rows_read"), msg.get("progress_age"), msg.get("waiting")
    if isinstance(rows, int) and not isinstance(rows, bool):
        node.rows_read = rows
    if isinstance(age, int | float) and not isinstance(age, bool):
        node.progress_age = float(age)
    node.waiting = waiting if isinstance(waiting, str) else None


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
