"""``NodeContext``: what a node's entry sees in its own process."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTEXT_FILE = "context.json"
ENTRY_FILE = "entry.pkl"
RESULT_FILE = "result.json"


@dataclass
class NodeContext:
    """Handed to the node's entry function, in the node's child process.

    Attributes:
        role: this node's role, e.g. ``"worker"``.
        index: this node's index within its role (0-based).
        cluster_spec: role -> list of ``"host:port"``, one per node, index order.
        properties: the cluster's string properties.
        job_id: the job run this node belongs to.
        attempt: the cluster attempt (rises on failover).
        work_dir: a private directory for this node, removed when the node ends.
    """

    role: str
    index: int
    cluster_spec: dict[str, list[str]]
    properties: dict[str, str]
    job_id: str
    attempt: int
    work_dir: str
    reserved_fd: int | None = None
    _stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _cooperative: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        """This node's own ``host:port`` from the cluster spec."""
        return self.cluster_spec[self.role][self.index]

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        """The port this node holds for its framework (see ``reserved_socket``)."""
        return int(self.address.rsplit(":", 1)[1])

    @property
    def world_size(self) -> int:
        return sum(len(v) for v in self.cluster_spec.values())

    def role_size(self, role: str | None = None) -> int:
        return len(self.cluster_spec[role or self.role])

    def reserved_socket(self) -> socket.socket:
        """The bound (not listening) socket that holds ``port``; call ``listen()`` to serve.

        Closing it releases the port; a server that sets ``SO_REUSEPORT`` can also bind
        the same port while the reservation is held.
        """
        if self.reserved_fd is None:
            raise RuntimeError("this node holds no reserved socket")
        return socket.socket(fileno=self.reserved_fd)

    @property
    def stop_requested(self) -> bool:
        """True once the AM asked this node to stop (e.g. a ps node after the workers).

        An entry that reads this (or calls ``wait_for_stop``) is trusted to stop by itself;
        otherwise a stop request raises ``SystemExit`` in the entry's main thread.
        """
        self._cooperative = True
        return self._stop_event.is_set()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Block until the AM asks this node to stop (or ``timeout``); returns whether it did."""
        self._cooperative = True
        return self._stop_event.wait(timeout)

    def request_stop(self) -> bool:
        """Mark a stop request; returns whether the entry handles it by itself."""
        self._stop_event.set()
        return self._cooperative

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role, "index": self.index, "cluster_spec": self.cluster_spec,
            "properties": self.properties, "job_id": self.job_id, "attempt": self.attempt,
            "work_dir": self.work_dir, "reserved_fd": self.reserved_fd,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeContext:
        return cls(**{k: data[k] for k in (
            "role", "index", "cluster_spec", "properties", "job_id", "attempt", "work_dir",
            "reserved_fd")})

    def save(self, directory: Path) -> Path:
        path = directory / CONTEXT_FILE
        path.write_text(json.dumps(self.to_json()))
        return path
