"""``NodeContext``: what a node's entry sees in its own process."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flink_dl.errors import InvalidStateError

CONTEXT_FILE = "context.json"
ENTRY_FILE = "entry.pkl"
RESULT_FILE = "result.json"
#: Rewritten by the entry's process on progress (its content: rows read so far); the node
#: runner watches its mtime (``timeouts.progress``: hung-entry detection) and reports the
#: rows to the AM.
PROGRESS_FILE = "progress"
_PROGRESS_EVERY_S = 0.5


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
    channels: dict[str, Any] | None = None
    _stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _cooperative: bool = field(default=False, repr=False)
    _input: Any = field(default=None, repr=False)
    _output: Any = field(default=None, repr=False)
    _last_progress: float = field(default=0.0, repr=False)
    _progress_fd: int | None = field(default=None, repr=False)
    _progress_timer: threading.Timer | None = field(default=None, repr=False)
    _state: Any = field(default=None, repr=False)

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
            raise InvalidStateError("this node holds no reserved socket")
        return socket.socket(fileno=self.reserved_fd)

    @property
    def stop_requested(self) -> bool:
        """True once the AM asked this node to stop (e.g. a ps node after the workers).

        An entry that reads this (or calls ``wait_for_stop``) is trusted to stop by itself;
        otherwise a stop request raises ``SystemExit`` in the entry's main thread.
        """
        self._cooperative = True
        self.heartbeat()  # a node that polls the flag is alive, not hung
        return self._stop_event.is_set()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Block until the AM asks this node to stop (or ``timeout``); returns whether it
        did. Waiting counts as progress (``timeouts.progress``)."""
        import time

        self._cooperative = True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.heartbeat()
            step = _PROGRESS_EVERY_S * 2
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            if self._stop_event.wait(step):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def request_stop(self) -> bool:
        """Mark a stop request; returns whether the entry handles it by itself."""
        self._stop_event.set()
        return self._cooperative

    def heartbeat(self) -> None:
        """Tell the node runner the entry is making progress (reading input and writing
        output count too). An entry silent for longer than ``timeouts.progress`` is
        declared hung and the node fails (then the cluster restarts, if it may).

        Writes at most every 0.5 s; a call inside that window is written at its end (so
        the rows read the AM reports catch up when the input stops)."""
        import time

        now = time.monotonic()
        wait = self._last_progress + _PROGRESS_EVERY_S - now
        if wait > 0:
            if self._progress_timer is None:
                timer = threading.Timer(wait, self._flush_progress)
                timer.daemon = True
                self._progress_timer = timer
                timer.start()
            return
        self._last_progress = now
        self._write_progress()

    def _flush_progress(self) -> None:
        import time

        self._progress_timer = None
        self._last_progress = time.monotonic()
        self._write_progress()

    def _write_progress(self) -> None:
        rows = self._input.rows_read if self._input is not None else 0
        try:
            if self._progress_fd is None:
                self._progress_fd = os.open(Path(self.work_dir) / PROGRESS_FILE,
                                            os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            # Fixed width: one pwrite replaces the whole content (and sets the mtime).
            os.pwrite(self._progress_fd, f"{rows:<20d}\n".encode(), 0)
        except OSError:
            pass

    # ------------------------------------------------------------ exactly-once state
    def _state_store(self) -> Any:
        if self._state is None:
            from flink_dl.channel.exactly_once import NodeStateStore

            info = self.channels or {}
            if not info.get("exactly_once"):
                raise InvalidStateError(
                    f"role {self.role!r} is not exactly-once: pass exactly_once=True to "
                    "add_role (and ClusterConfig(checkpoint_dir=...))")
            self._state = NodeStateStore(info["state_dir"], keep=int(info.get("keep", 5)))
        return self._state

    @property
    def input_position(self) -> int:
        """Exactly-once roles: sequence number of the last input batch handed to the entry
        (0 before the first). State saved now covers every batch up to it."""
        return int(self.node_input().position)

    def load_state(self) -> Any:
        """Exactly-once roles: the state the entry saved for the input position the stream
        resumes from (``None`` on a fresh start). Call before reading input; the batches
        that follow are exactly those the state does not cover."""
        from flink_dl.channel.exactly_once import choose_restore

        node_input = self.node_input()
        store = self._state_store()
        position = choose_restore(store.directory, *node_input.restore_range())
        node_input.resume_at(position)
        return store.load(position)

    def save_state(self, state: Any) -> None:
        """Exactly-once roles: save ``state`` (picklable) as covering every input batch
        read so far. The node's operator then drops those batches from Flink state; after
        a failure the cluster restarts, ``load_state()`` returns the newest state Flink's
        restored position allows, and the batches after it are replayed exactly once."""
        self._state_store().save(self.input_position, state)
        self.heartbeat()

    # ------------------------------------------------------------ data channels
    def _channel_ring(self, name: str, missing: str) -> Any:
        """Map the ``input``/``output`` ring this node process inherited."""
        handle = (self.channels or {}).get(name)
        if handle is None:
            raise InvalidStateError(f"role {self.role!r} {missing}")
        from flink_dl.channel.ring import Ring, RingHandle

        assert self.channels is not None
        return Ring(RingHandle.from_json(handle), timeout_s=self.channels["timeout"],
                    peer_alive=_parent_alive)

    def node_input(self) -> Any:
        """This node's input reader (``flink_dl.channel.node_io.NodeInput``: epochs,
        batches, rows read, exactly-once positions), opened on first use; a role without
        input raises ``RuntimeError``."""
        if self._input is None:
            from flink_dl.channel.codecs import get_codec
            from flink_dl.channel.node_io import NodeInput

            ring = self._channel_ring("input", "has no input: pass input=... to add_role")
            self._input = NodeInput(ring, get_codec(self._codec_name), self.epochs_total,
                                    Path(self.work_dir),
                                    sequenced=bool((self.channels or {}).get("exactly_once")))
            self._input.on_progress = self.heartbeat
        return self._input

    def _node_output(self) -> Any:
        if self._output is None:
            import base64

            import pyarrow as pa

            from flink_dl.channel.codecs import get_codec
            from flink_dl.channel.node_io import NodeOutput

            ring = self._channel_ring(
                "output", "declares no output: pass output_schema=... to add_role")
            assert self.channels is not None
            schema = pa.ipc.read_schema(pa.py_buffer(
                base64.b64decode(self.channels["output_schema"])))
            self._output = NodeOutput(ring, get_codec(self._codec_name), schema)
        return self._output

    @property
    def _codec_name(self) -> str:
        return str((self.channels or {}).get("codec") or "arrow")

    @property
    def epoch(self) -> int:
        """The input epoch being read (0-based); 0 for a role without input."""
        if self._input is None and (self.channels or {}).get("input") is None:
            return 0
        return self.node_input().epoch

    @property
    def epochs_total(self) -> int:
        return int((self.channels or {}).get("epochs") or 1)

    def epochs(self) -> Iterator[Any]:
        """One ``Epoch`` per pass over the input (iterate each for ``pyarrow.RecordBatch``es)."""
        return self.node_input().epochs()

    def batches(self) -> Iterator[Any]:
        """Every input ``pyarrow.RecordBatch``, over all epochs (``ctx.epoch`` says which)."""
        return self.node_input().batches()

    def numpy_batches(self, batch_size: int, columns: list[str] | None = None,
                      drop_last: bool = False) -> Iterator[dict[str, Any]]:
        """Input as dicts of numpy arrays of ``batch_size`` rows, over all epochs.

        Batches never straddle an epoch boundary.
        """
        from flink_dl.channel.arrays import numpy_batches

        for epoch in self.epochs():
            yield from numpy_batches(iter(epoch), batch_size, columns, drop_last)

    def input_stats(self) -> dict[str, int]:
        """The input channel's fill level: ``buffered_bytes`` now and its ``capacity``."""
        ring = self.node_input().ring
        return {"buffered_bytes": ring.used_bytes, "capacity": ring.capacity,
                "rows_read": self.node_input().rows_read}

    def write(self, rows: Any) -> None:
        """Send rows out of the node; they leave the role's operator as a Flink stream."""
        self._node_output().write(rows)
        self.heartbeat()

    def _close_io(self) -> None:
        if (self.channels or {}).get("output") is not None:
            self._node_output().close()
        if self._input is not None:
            self._input.ring.close_consumer()

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role, "index": self.index, "cluster_spec": self.cluster_spec,
            "properties": self.properties, "job_id": self.job_id, "attempt": self.attempt,
            "work_dir": self.work_dir, "reserved_fd": self.reserved_fd,
            "channels": self.channels,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeContext:
        return cls(**{k: data[k] for k in (
            "role", "index", "cluster_spec", "properties", "job_id", "attempt", "work_dir",
            "reserved_fd", "channels")})

    def save(self, directory: Path) -> Path:
        path = directory / CONTEXT_FILE
        path.write_text(json.dumps(self.to_json()))
        return path


_PARENT = os.getppid()


def _parent_alive() -> bool:
    return os.getppid() == _PARENT
