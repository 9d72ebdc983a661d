"""The PyFlink functions that host the AM and the nodes.

Each runs its whole lifecycle inside one ``flat_map`` call (PyFlink does not await
``close()`` in process mode, so nothing important may happen there) and emits one JSON
record describing how it ended.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyflink.common import Row
from pyflink.datastream.functions import FlatMapFunction, KeyedProcessFunction, RuntimeContext

from flink_dl.channel.codecs import get_codec
from flink_dl.channel.ring import ChannelClosedError, FrameKind, Ring
from flink_dl.cluster.am import AppMaster
from flink_dl.cluster.node import ChannelSpec, NodeRunner
from flink_dl.config import ClusterConfig
from flink_dl.flink.task_info import attempt_number, subtask_index

log = logging.getLogger(__name__)


class AMFunction(FlatMapFunction):
    """Parallelism-1 operator running the AM of one ML cluster."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.attempt = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        self.attempt = attempt_number(runtime_context)
        log.info("AM operator of job %s opened (attempt %d)", self.config.job_id, self.attempt)

    def flat_map(self, value: Any) -> Iterator[str]:
        log.info("AM of job %s starting", self.config.job_id)
        summary = AppMaster(self.config, self.attempt).run()
        yield json.dumps(summary.to_dict())


class NodeFunction(FlatMapFunction):
    """One subtask per node of ``role``: registers, runs the entry process, watches it."""

    def __init__(self, config: ClusterConfig, role: str, entry_bytes: bytes,
                 channels: ChannelSpec | None = None) -> None:
        self.config = config
        self.role = role
        self.entry_bytes = entry_bytes
        self.channels = channels or ChannelSpec()
        self.index = 0
        self.attempt = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        self.index = subtask_index(runtime_context)
        self.attempt = attempt_number(runtime_context)

    def flat_map(self, value: Any) -> Iterator[Any]:
        runner = NodeRunner(self.config, self.role, self.index, self.attempt, self.entry_bytes,
                            channels=self.channels)
        if not self.channels.output:
            yield json.dumps(runner.run().to_dict())
            return
        # A role without input that writes rows: collect them while it runs.
        runner.run_in_background()
        runner.wait_started()
        assert runner.output is not None
        yield from drain_rows(runner.output, block=True, codec=self.channels.codec)
        runner.join()
        runner.close_channels()


class DropAll(FlatMapFunction):
    """Emits nothing: ties the AM into a role's output stream (same job, same region)."""

    def flat_map(self, value: Any) -> Iterator[Any]:
        return iter(())


END_OF_TIME = 2**63 - 2  # fired by the final watermark of a bounded input


class FedNodeFunction(KeyedProcessFunction):
    """One subtask per node of a role with input: feeds the node's input channel with the
    packed Arrow messages it receives, emits what the node writes, and treats the
    end-of-input timer as end-of-data."""

    def __init__(self, config: ClusterConfig, role: str, entry_bytes: bytes,
                 channels: ChannelSpec, output_schema_bytes: bytes | None) -> None:
        self.config = config
        self.role = role
        self.entry_bytes = entry_bytes
        self.channels = channels
        self.output_schema_bytes = output_schema_bytes
        self.runner: NodeRunner | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self.index = subtask_index(runtime_context)
        self.attempt = attempt_number(runtime_context)
        self.timer_set = False
        self.started = False
        self.dropped_messages = 0
        self.output_schema = (pa.ipc.read_schema(pa.py_buffer(self.output_schema_bytes))
                              if self.output_schema_bytes else None)
        self.runner = NodeRunner(self.config, self.role, self.index, self.attempt,
                                 self.entry_bytes, channels=self.channels)
        self.runner.run_in_background()

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        assert self.runner is not None
        try:
            if not self.timer_set:
                ctx.timer_service().register_event_time_timer(END_OF_TIME)
                self.timer_set = True
            if not self.started:
                self.runner.wait_started()
                self.started = True
            payload = memoryview(value[0])
            if payload.nbytes:
                self._send(payload)
            rows = list(self._drain(block=False)) if self.runner.output is not None else []
        except BaseException:
            self.runner.close_channels()
            raise
        yield from rows

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        assert self.runner is not None
        try:
            self.runner.wait_started()
            if self.runner.input is not None:
                self._send_end()
            rows = list(self._drain(block=True)) if self.runner.output is not None else []
            outcome = self.runner.join()
        finally:
            self.runner.close_channels()
        if self.dropped_messages:
            log.warning("node %s:%d returned before reading all its input: %d message(s) "
                        "were not consumed", self.role, self.index, self.dropped_messages)
        yield from rows
        if self.output_schema is None:
            yield json.dumps(outcome.to_dict())

    def _send(self, payload: memoryview) -> None:
        assert self.runner is not None and self.runner.input is not None
        if self.dropped_messages:
            self.dropped_messages += 1
            return
        try:
            self.runner.input.send(payload)
        except ChannelClosedError:
            self._raise_if_entry_failed()
            self.dropped_messages += 1

    def _send_end(self) -> None:
        assert self.runner is not None and self.runner.input is not None
        if self.dropped_messages:
            return
        try:
            self.runner.input.send_end()
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


def drain_rows(ring: Ring, block: bool, codec: str = "arrow") -> Iterator[Row]:
    """Rows the node wrote, until END (or, when not blocking, until the ring is empty)."""
    decoder = get_codec(codec)
    while True:
        try:
            frame = ring.recv_view() if block else ring.poll_view()
        except ChannelClosedError:
            return  # the entry is gone; join() reports how it ended
        if frame is None:
            return
        kind, view = frame
        if kind is FrameKind.END:
            ring.release()
            return
        if kind is FrameKind.DATA:
            batch = decoder.decode(pa.py_buffer(bytes(view)))
            ring.release()
            for row in batch.to_pylist():
                yield Row(**row)
        else:
            ring.release()
