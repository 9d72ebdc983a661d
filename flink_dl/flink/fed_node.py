"""The node operator of a role with input (``flink.feed``): feeds the node's input channel,
emits what it writes, ends it at the end of input; in exactly-once mode also numbers the
batches (``flink.exactly_once_ledger``) and, in subtask 0, hosts the AM
(``flink.hosted_am``).

Like every flink-dl operator it runs its lifecycle inside the calls it gets from Flink
(``flink.operators`` has the AM and input-less node operators).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyflink.datastream.functions import (
    KeyedBroadcastProcessFunction,
    KeyedProcessFunction,
    RuntimeContext,
)

from flink_dl.channel.ring import ChannelClosedError
from flink_dl.cluster.am import AMAddress
from flink_dl.cluster.node import ChannelSpec, NodeRunner
from flink_dl.cluster.registry import get_rendezvous
from flink_dl.config import ClusterConfig
from flink_dl.errors import ClusterFailedError, ClusterTimeoutError
from flink_dl.flink.exactly_once_ledger import ExactlyOnceLedger
from flink_dl.flink.hosted_am import HostedAM
from flink_dl.flink.operators import END_OF_TIME, am_address_of
from flink_dl.flink.output_rows import drain_rows
from flink_dl.flink.task_info import attempt_number, subtask_index
from flink_dl.startup import worker_tuning

log = logging.getLogger(__name__)


class _FedNode:
    """One subtask per node of a role with input: feeds the node's input channel with the
    packed Arrow messages it receives, emits what the node writes, and treats the
    end-of-input timer as end-of-data. ``FedNodeFunction`` and ``AMHostingFedNodeFunction``
    are the two Flink shapes of it.

    The node starts once the AM's address is known: from the broadcast address stream
    (``FedNodeFunction``), or at once when the address comes from a rendezvous store.
    Input that arrives before the address is held (at most ``PRESTART_BUFFER_BYTES``):
    blocking would keep the address itself from being delivered, as both inputs reach
    Python through the same call sequence. Once the node runs, waiting for room in its
    channel backpressures Flink as usual.

    Exactly-once mode (``channels.exactly_once``): batches are numbered and kept in keyed
    state until the node's saved state covers them (``flink_dl.channel.exactly_once``);
    subtask 0 also hosts the cluster's AM in a thread (a blocking AM operator would keep
    Flink's checkpoints from completing). In that mode, whenever the role has output, and
    while the address is awaited, a processing-time timer polls the AM and the node every
    ``POLL_MS``, so that failures surface and rows the node writes leave while no input
    flows (a stream that slows or pauses).
    """

    #: Bytes of input a node operator holds while it waits for the AM's address.
    PRESTART_BUFFER_BYTES = 512 * 1024 * 1024

    def __init__(self, config: ClusterConfig, role: str, entry_bytes: bytes,
                 channels: ChannelSpec, output_schema_bytes: bytes | None,
                 host_am: bool = False) -> None:
        self.config = config
        self.role = role
        self.entry_bytes = entry_bytes
        self.channels = channels
        self.output_schema_bytes = output_schema_bytes
        self.host_am = host_am
        self.runner: NodeRunner | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        worker_tuning.apply()
        self.index = subtask_index(runtime_context)
        self.attempt = attempt_number(runtime_context)
        self.timer_set = False
        self.started = False
        self.finished = False
        self.end_seen = False
        self.dropped_messages = 0
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.waiting_since: float | None = None
        self.output_schema = (pa.ipc.read_schema(pa.py_buffer(self.output_schema_bytes))
                              if self.output_schema_bytes else None)
        self.am: HostedAM | None = None
        if self.host_am and self.index == 0:
            self.am = HostedAM(self.config, self.attempt)
        self.eo = (ExactlyOnceLedger(runtime_context, self.attempt)
                   if self.channels.exactly_once else None)
        self.restored = False
        self._next_poll: int | None = None
        self.runner = None
        self.through_dataflow = get_rendezvous(self.config.rendezvous).through_dataflow
        if not self.through_dataflow:
            self._start_node(None)

    def _start_node(self, am_address: AMAddress | None) -> None:
        self.runner = NodeRunner(self.config, self.role, self.index, self.attempt,
                                 self.entry_bytes, channels=self.channels,
                                 am_address=am_address)
        self.runner.run_in_background()

    def process_broadcast_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        """The AM's address: start the node, hand it the input held so far, and finish
        at once if the input has ended already."""
        address = am_address_of(value, self.config)
        if self.runner is not None:
            if not self.through_dataflow:
                return  # it found the AM in the store
            log.warning("node %s:%d got a second AM address (%s); ignoring it", self.role,
                        self.index, value)
            return
        self._start_node(address)
        assert self.runner is not None
        try:
            if self.pending or self.end_seen:
                self.runner.wait_started()
                self.started = True
            pending, self.pending, self.pending_bytes = self.pending, [], 0
            for payload in pending:
                self._send(memoryview(payload))
            rows = list(self._drain(block=False)) if self.runner.output is not None \
                and self.started else []
        except BaseException:
            self.runner.close_channels()
            raise
        yield from rows
        if self.end_seen:
            yield from self._finish()

    def process_element(self, value: Any, ctx: Any) -> Iterator[Any]:
        if not self.timer_set:
            ctx.timer_service().register_event_time_timer(END_OF_TIME)
            self.timer_set = True
        if self.runner is None:
            self._hold(value[0])
            if self._next_poll is None:
                self._schedule_poll(ctx)
            return
        try:
            if self._wants_poll() and self._next_poll is None:
                self._schedule_poll(ctx)
            if self.am is not None:
                self.am.raise_if_failed()
            if not self.started:
                self.runner.wait_started()
                self.started = True
            if self.eo is not None and not self.restored:
                self._restore()
            payload = memoryview(value[0])
            if payload.nbytes:
                if self.eo is not None:
                    self._send(memoryview(self.eo.record(payload)))
                    self.eo.prune(self.runner.state_dir)
                else:
                    self._send(payload)
            rows = list(self._drain(block=False)) if self.runner.output is not None else []
        except BaseException:
            self.runner.close_channels()
            raise
        yield from rows

    def _hold(self, payload: bytes) -> None:
        """Keep input that arrived before the AM's address (bounded)."""
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
        if not payload:
            return
        self.pending.append(bytes(payload))
        self.pending_bytes += len(payload)
        if self.pending_bytes > self.PRESTART_BUFFER_BYTES:
            raise ClusterFailedError(
                f"node {self.role}:{self.index} of job {self.config.job_id}: "
                f"{self.pending_bytes} bytes of input arrived before the AM's address "
                f"(limit {self.PRESTART_BUFFER_BYTES}); is the AM operator running?")

    def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
        if timestamp != END_OF_TIME:
            yield from self._poll(ctx, timestamp)
            return
        if self.runner is None:
            # The input ended before the AM's address came: finish when it does.
            self.end_seen = True
            return
        yield from self._finish()

    def _finish(self) -> Iterator[Any]:
        """End of input: tell the node, collect what it writes, wait for its outcome."""
        assert self.runner is not None
        try:
            self.runner.wait_started()
            if self.eo is not None and not self.restored:
                self._restore()
            if self.runner.input is not None:
                self._send_end()
            rows = list(self._drain(block=True)) if self.runner.output is not None else []
            outcome = self.runner.join()
        finally:
            self.runner.close_channels()
        if self.eo is not None and outcome.state != "FINISHED":
            raise ClusterFailedError(
                f"exactly-once node {self.role}:{self.index} ended {outcome.state} before "
                "its input was done (the cluster failed); failing the task to restart it")
        self.finished = True
        if self.dropped_messages:
            log.warning("node %s:%d returned before reading all its input: %d message(s) "
                        "were not consumed", self.role, self.index, self.dropped_messages)
        yield from rows
        if self.output_schema is None:
            yield json.dumps(outcome.to_dict())
        if self.am is not None:
            summary = self.am.join()
            if self.output_schema is None:
                yield json.dumps(summary)

    # ------------------------------------------------------------ polling
    POLL_MS = 500

    def _schedule_poll(self, ctx: Any) -> None:
        service = ctx.timer_service()
        self._next_poll = service.current_processing_time() + self.POLL_MS
        service.register_processing_time_timer(self._next_poll)

    def _poll(self, ctx: Any, timestamp: int) -> Iterator[Any]:
        """Processing-time tick: surface a failed AM or node, emit what the node wrote;
        exactly-once: resume a restored node.

        One chain of ticks per attempt: a tick restored from a checkpoint is adopted only
        when this attempt has none yet."""
        if self.finished:
            return
        if self.runner is None:
            self._check_address_wait()
            if self._next_poll is None or timestamp == self._next_poll:
                self._schedule_poll(ctx)
            return
        try:
            if self.am is not None:
                self.am.raise_if_failed()
            if self.runner.background_ended:
                self.runner.join(0)  # raises the node's failure
            if self.eo is not None and not self.restored and self.runner.start_attempted:
                self.runner.wait_started()
                self.started = True
                self._restore()
            if self.eo is not None and self.restored:
                self.eo.prune(self.runner.state_dir)
            rows = (list(self._drain(block=False))
                    if self.runner.output is not None and self.started else [])
        except BaseException:
            self.runner.close_channels()
            raise
        if self._wants_poll() and (self._next_poll is None or timestamp == self._next_poll):
            self._schedule_poll(ctx)
        yield from rows

    def _wants_poll(self) -> bool:
        # From the role's spec, not the node's rings: those open only once the node has
        # registered, which may be after the last input of an idle stream arrived.
        return self.eo is not None or self.channels.output

    def _check_address_wait(self) -> None:
        waited = time.monotonic() - (self.waiting_since or time.monotonic())
        if waited > self.config.timeout.rendezvous:
            raise ClusterTimeoutError(
                f"node {self.role}:{self.index} of job {self.config.job_id}: no AM address "
                f"arrived within timeouts.rendezvous={self.config.timeout.rendezvous}s of "
                "its first input (is the AM operator running?)")

    def _restore(self) -> None:
        """Tell the node where its input resumes and replay what its state lacks."""
        assert self.runner is not None and self.runner.input is not None
        assert self.eo is not None and self.runner.state_dir is not None
        self.restored = True
        for frame in self.eo.restore():
            self._send(memoryview(frame))

    def _send(self, payload: memoryview) -> None:
        assert self.runner is not None and self.runner.input is not None
        if self.dropped_messages:
            self.dropped_messages += 1
            return
        try:
            self.runner.input.send(payload)
        except ChannelClosedError:
            self._raise_if_entry_failed()
            if self.eo is not None:
                raise ClusterFailedError(
                    f"exactly-once node {self.role}:{self.index} stopped before its input "
                    "ended; failing the task so that the cluster restarts") from None
            self.dropped_messages += 1

    def _send_end(self) -> None:
        assert self.runner is not None and self.runner.input is not None
        if self.dropped_messages:
            return
        try:
            self.runner.input.send_end()
            self.runner.input_ended = True
        except ChannelClosedError:
            self._raise_if_entry_failed()

    def _raise_if_entry_failed(self) -> None:
        """If the entry process has ended with an error, raise it (with its traceback)."""
        assert self.runner is not None
        if not self.runner.entry_alive:
            self.runner.join(timeout=self.config.timeout.stop_grace + 5)

    def _drain(self, block: bool) -> Iterator[Any]:
        assert self.runner is not None and self.runner.output is not None
        return drain_rows(self.runner.output, block, codec=self.channels.codec)


class FedNodeFunction(_FedNode, KeyedBroadcastProcessFunction):
    """A role with input, connected to the AM's broadcast address stream."""


class AMHostingFedNodeFunction(_FedNode, KeyedProcessFunction):
    """An exactly-once role with input: its subtask 0 hosts the AM, and the nodes find it
    in the rendezvous store."""
