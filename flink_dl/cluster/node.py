"""The node runner: register with the AM, start the entry in a child process, watch it.

One ``NodeRunner`` per ML node (one Flink operator subtask). ``run()`` blocks until the
entry finished (returns its result), was stopped by the AM, or failed (raises
``NodeFailedError`` with the entry's traceback). Every exit path stops the child's whole
process group and removes the node's private work directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flink_dl.channel.ring import Ring
from flink_dl.cluster import prewarm, runners
from flink_dl.cluster.am import AMAddress
from flink_dl.cluster.am_client import AMConnection, connect_am, find_am, rendezvous_store
from flink_dl.cluster.api import RendezvousStore
from flink_dl.cluster.context import ENTRY_FILE, PROGRESS_FILE, NodeContext
from flink_dl.cluster.entry_launch import entry_env
from flink_dl.cluster.entry_process import EntryProcess
from flink_dl.cluster.leftovers import (
    WORK_DIR_PREFIX,
    owners_of,
    sweep_node_attempts,
    write_owner,
)
from flink_dl.cluster.net import LOOPBACK, is_wildcard, node_host, reserve_port
from flink_dl.cluster.watch import NodeWatch
from flink_dl.config import ClusterConfig
from flink_dl.errors import (
    AuthenticationError,
    ClusterFailedError,
    ClusterTimeoutError,
    ProtocolError,
)

log = logging.getLogger(__name__)

__all__ = ["WORK_DIR_PREFIX", "AMConnection", "ChannelSpec", "NodeOutcome", "NodeRunner",
           "find_am"]


@dataclass
class NodeOutcome:
    """How a node ended: ``state`` is FINISHED or STOPPED; ``result`` is the entry's return."""

    role: str
    index: int
    attempt: int
    state: str
    address: str
    cluster_spec: dict[str, list[str]]
    result: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "node", "role": self.role, "index": self.index,
                "attempt": self.attempt, "state": self.state, "address": self.address,
                "cluster_spec": self.cluster_spec, "result": self.result}


@dataclass(frozen=True)
class ChannelSpec:
    """Data channels of a node: input fed by its Flink operator, output read back by it."""

    input: bool = False
    output: bool = False
    capacity: int = 64 * 1024 * 1024
    epochs: int = 1
    output_schema: bytes | None = None  # Arrow IPC-serialised schema of ``ctx.write`` rows
    codec: str = "arrow"  # how batches travel through the rings (flink_dl.channel.codecs)
    exactly_once: bool = False  # sequenced input + node state (flink_dl.channel.exactly_once)
    state_keep: int = 5  # exactly-once: node state files kept


class NodeRunner:
    """Runs one ML node; see the module docstring.

    ``run()`` registers, spawns the entry process, then heartbeats the AM and watches the
    entry until it ends, all in the calling thread. ``run_in_background()`` does the same
    in a thread of its own, for operators that feed the node while it runs.
    """

    def __init__(
        self,
        config: ClusterConfig,
        role: str,
        index: int,
        attempt: int,
        entry_bytes: bytes,
        store: RendezvousStore | None = None,
        channels: ChannelSpec | None = None,
        am_address: AMAddress | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self.index = index
        self.attempt = attempt
        self.entry_bytes = entry_bytes
        self.timeouts = config.timeout
        self.channels = channels or ChannelSpec()
        #: The AM's address when it came through the dataflow; else it is looked up in
        #: the rendezvous store.
        self.am_address = am_address
        self.name = f"{role}:{index}"
        self.store = store or (None if am_address else rendezvous_store(config, self.name))
        self.input: Ring | None = None
        self.output: Ring | None = None
        self._proc: EntryProcess | None = None
        #: Set by the operator once it has sent the end of input.
        self.input_ended = False
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._outcome: NodeOutcome | None = None
        self._error: BaseException | None = None
        self._cleaned = False
        self._conn: AMConnection | None = None
        self._reserved: socket.socket | None = None
        self._work_dir: Path | None = None
        self._prewarmed: prewarm.Prewarmed | None = None
        runners.register(self)

    @property
    def entry_alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    @property
    def start_attempted(self) -> bool:
        """Whether a background node got past starting (its entry runs, or it failed to)."""
        return self._started.is_set()

    @property
    def background_ended(self) -> bool:
        """Whether a background node's thread has ended (``join`` then returns at once)."""
        return self._thread is not None and not self._thread.is_alive()

    def run(self) -> NodeOutcome:
        """Run the node in the calling thread; returns the outcome or raises its error."""
        self.start()
        self._monitor_main()
        return self._result()

    def run_in_background(self) -> None:
        """Run the node in a thread of its own (it must outlive the entry process: the
        kernel kills the entry when the thread that started it ends)."""

        def main() -> None:
            try:
                self.start()
            except BaseException as exc:
                self._error = exc
                self._started.set()
                return
            self._started.set()
            self._monitor_main()

        self._thread = threading.Thread(target=main, daemon=True,
                                        name=f"flink-dl-node-{self.name}")
        self._thread.start()

    def wait_started(self) -> None:
        """Block until the entry process runs (or raise why it could not start)."""
        self._started.wait()
        if self._error is not None and self._proc is None:
            raise self._error

    def join(self, timeout: float | None = None) -> NodeOutcome:
        """Wait for a background node to end; return its outcome or raise its error."""
        assert self._thread is not None, "run_in_background() first"
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ClusterTimeoutError(f"node {self.name} still running after {timeout}s")
        return self._result()

    def _result(self) -> NodeOutcome:
        self._cleanup()
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome

    def start(self) -> None:
        """Register with the AM, receive the spec, and start the entry process."""
        if self.attempt > 0:
            self._sweep_older_attempts()
        try:
            work_dir, self._prewarmed = prewarm.node_work_dir(
                self.config.job_id, self.attempt, self.role, self.index)
            self._work_dir = work_dir
            write_owner(work_dir, self.config.job_id, owners_of(self.config))
            self._conn = connect_am(self.am_address or find_am(
                self.store, self.config, self.attempt), self.config)
            # The node holds its port on the interface that reached the AM (its peers'
            # network) and advertises that address, unless told otherwise.
            bind_host = self.config.bind_host or LOOPBACK
            local = str(self._conn.sock.getsockname()[0])
            reserved = self._reserved = reserve_port(local if is_wildcard(bind_host)
                                                     else bind_host)
            host = node_host(bind_host, self.config.advertise_host, self._conn.sock)
            address = f"{host}:{reserved.getsockname()[1]}"
            reply = self._conn.request(
                {"type": "register", "role": self.role, "index": self.index,
                 "address": address, "pid": os.getpid(), "host": socket.gethostname()},
                timeout=self.timeouts.registration + self.timeouts.request,
            )
            spec = reply["cluster_spec"]
            self._open_channels()
            ctx = NodeContext(
                role=self.role, index=self.index, cluster_spec=spec,
                properties=dict(self.config.properties), job_id=self.config.job_id,
                attempt=self.attempt, work_dir=str(work_dir), reserved_fd=reserved.fileno(),
                channels=self._channel_info(),
            )
            self._proc = self._start_entry(ctx, work_dir, reserved)
        except BaseException as exc:
            self._cleanup()
            self.close_channels()
            raise self._as_cluster_error(exc) from exc
        self._address, self._spec = address, spec

    def _sweep_older_attempts(self) -> None:
        """After a restart: kill this node's entry processes of earlier attempts and remove
        their work dirs (normally gone already; this is the safety net for paths where
        PyFlink gave the old attempt no chance to clean up)."""
        sweep_node_attempts(self.config.job_id, self.role, self.index, self.attempt)

    def _monitor_main(self) -> None:
        assert self._proc is not None and self._conn is not None
        try:
            watch = NodeWatch(role=self.role, index=self.index, job_id=self.config.job_id,
                              attempt=self.attempt, timeouts=self.timeouts, conn=self._conn,
                              entry=self._proc, waiting_on_flink=self._waiting_on_flink)
            state, result = watch.run()
            self._outcome = NodeOutcome(self.role, self.index, self.attempt, state,
                                        self._address, self._spec, result)
        except BaseException as exc:
            self._error = self._as_cluster_error(exc)
        finally:
            self._proc.stop(self.timeouts.stop_grace)

    def _waiting_on_flink(self) -> str | None:
        """``"input"`` while the entry waits for input Flink has not sent yet, ``"output"``
        while Flink does not drain its output (at least half full); else ``None``."""
        ring = self.input
        if ring is not None and not self.input_ended and ring.used_bytes == 0:
            return "input"
        ring = self.output
        if ring is not None and ring.used_bytes * 2 >= ring.capacity:
            return "output"
        return None

    def _as_cluster_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, AuthenticationError | ProtocolError | ConnectionError | TimeoutError):
            err = ClusterFailedError(
                f"ML node {self.name} of job {self.config.job_id} attempt {self.attempt} "
                f"lost its AM: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
            return err
        return exc

    def _open_channels(self) -> None:
        tag = f"{self.config.job_id}-{self.attempt}-{self.role}-{self.index}"
        t = self.timeouts.channel
        if self.channels.input:
            self.input = Ring.create(f"{tag}-in", self.channels.capacity, timeout_s=t)
            self.input.peer_alive = lambda: self.entry_alive
        if self.channels.output:
            self.output = Ring.create(f"{tag}-out", self.channels.capacity, timeout_s=t)
            self.output.peer_alive = lambda: self.entry_alive

    def _channel_info(self) -> dict[str, Any]:
        import base64

        schema = self.channels.output_schema
        return {
            "input": self.input.handle.to_json() if self.input else None,
            "output": self.output.handle.to_json() if self.output else None,
            "epochs": self.channels.epochs,
            "timeout": self.timeouts.channel,
            "output_schema": base64.b64encode(schema).decode() if schema else None,
            "codec": self.channels.codec,
            "exactly_once": self.channels.exactly_once,
            "state_dir": self.state_dir,
            "keep": self.channels.state_keep,
        }

    @property
    def state_dir(self) -> str | None:
        """Exactly-once: the durable directory of this node's saved state."""
        if not self.channels.exactly_once or not self.config.checkpoint_dir:
            return None
        from flink_dl.channel.exactly_once import node_state_dir

        return node_state_dir(self.config.checkpoint_dir, self.config.job_id, self.role,
                              self.index)

    def _cleanup(self) -> None:
        """Stop the entry's process group, close the AM connection, remove the work dir."""
        if self._cleaned:
            return
        self._cleaned = True
        if self._prewarmed is not None:  # never launched
            prewarm.discard_one(self._prewarmed)
        if self._proc is not None:
            self._proc.stop(self.timeouts.stop_grace)
        if self._conn is not None:
            self._conn.close()
        if self._reserved is not None:
            self._reserved.close()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        if self.store is not None:
            self.store.close()

    def close_channels(self) -> None:
        """Release the node's shared memory (memfds are freed with their last mapping)."""
        for ring in (self.input, self.output):
            if ring is not None:
                ring.close()
        self.input = self.output = None

    def _start_entry(self, ctx: NodeContext, work_dir: Path,
                     reserved: socket.socket) -> EntryProcess:
        ctx.save(work_dir)
        (work_dir / PROGRESS_FILE).write_text("0\n")
        (work_dir / ENTRY_FILE).write_bytes(self.entry_bytes)
        env = entry_env(self.config.env, self.config.job_id, self.attempt, self.role,
                        self.index)
        fds = [reserved.fileno(), *(fd for ring in (self.input, self.output)
                                    if ring is not None for fd in ring.handle.fds())]
        prewarmed, self._prewarmed = self._prewarmed, None
        return EntryProcess(self.name, work_dir, env, fds, prewarmed=prewarmed)
