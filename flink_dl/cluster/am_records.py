"""The AM's records: its published address (``AMAddress``), its view of one node
(``NodeRecord``) and its end-of-attempt report (``AMSummary``). Plain data; imports only
the cluster's interfaces and errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flink_dl.cluster.api import ClusterState, NodeState
from flink_dl.errors import ConfigError, ProtocolError


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
                raise ConfigError(f"bad hosts {hosts!r}")
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


def note_progress(node: NodeRecord, msg: dict[str, Any]) -> None:
    """Copy the progress a node's heartbeat reports into its record."""
    rows, age, waiting = msg.get("rows_read"), msg.get("progress_age"), msg.get("waiting")
    if isinstance(rows, int) and not isinstance(rows, bool):
        node.rows_read = rows
    if isinstance(age, int | float) and not isinstance(age, bool):
        node.progress_age = float(age)
    node.waiting = waiting if isinstance(waiting, str) else None
