"""The PyFlink functions that host the AM and the nodes of roles without input (a role
with input: ``flink.fed_node``).

Each runs its whole lifecycle inside calls it gets from Flink (PyFlink does not await
``close()`` in process mode, so nothing important may happen there) and emits one JSON
record describing how it ended. The AM operator also emits its address, which Flink
broadcasts to every node operator (``AM_ADDRESS_TAG``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from pyflink.common import Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import FlatMapFunction, KeyedProcessFunction, RuntimeContext

from flink_dl.cluster.am import AMAddress
from flink_dl.cluster.node import ChannelSpec, NodeRunner
from flink_dl.config import ClusterConfig
from flink_dl.errors import ClusterFailedError, ClusterNodeFailedError
from flink_dl.flink.hosted_am import HostedAM
from flink_dl.flink.output_rows import drain_rows
from flink_dl.flink.task_info import attempt_number, subtask_index
from flink_dl.startup import worker_tuning

log = logging.getLogger(__name__)


#: Seconds the AM operator waits, after a node reported its failure, for Flink to cancel it
#: before it raises the cluster's error itself (see ``AMFunction.flat_map``).
NODE_FAILURE_HANDOVER_S = 2.0


#: The AM operator's side output: one JSON ``AMAddress`` per attempt, broadcast to every
#: node operator (``rendezvous="dataflow"``).
AM_ADDRESS_TAG = OutputTag("flink-dl-am-address", Types.STRING())


class AMFunction(KeyedProcessFunction):
    """Parallelism-1 operator running the AM of one ML cluster, over a one-element keyed
    seed.

    ``process_element`` starts the AM (its server runs in a thread), emits its address on
    ``AM_ADDRESS_TAG`` and returns, so that PyFlink delivers the record (it holds what a
    call yields until the call returns); the seed's final watermark then fires the
    end-of-time timer, in which the operator waits for the cluster to end and emits its
    summary. Blocking there keeps the task, and so the AM thread, alive.
    """

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.attempt = 0
        self.am: HostedAM | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        worker_tuning.apply()
        self.attempt = attempt_number(runtime_context)
        log.debug("AM operator of job %s opened (attempt %d)", self.config.job_id,
                  self.attempt)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        log.debug("AM of job %s starting", self.config.job_id)
        self.am = HostedAM(self.config, self.attempt)
        ctx.timer_service().register_event_time_timer(END_OF_TIME)
        assert self.am.am.am_address is not None
        yield AM_ADDRESS_TAG, self.am.am.am_address.to_json()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext
                 ) -> Iterator[Any]:
        assert self.am is not None
        try:
            summary = self.am.join()
        except ClusterNodeFailedError:
            # A node reported its own failure, so its task fails the job and Flink cancels
            # this one. Raising at that very moment races Beam's teardown of the shared
            # Python environment ("Reference count must not be negative": a FATAL error
            # that kills the TaskManager, seen on the mini-cluster), so give the
            # cancellation a head start; the error is raised only if it does not come.
            time.sleep(NODE_FAILURE_HANDOVER_S)
            raise
        yield json.dumps(summary)


def am_address_of(value: Any, config: ClusterConfig) -> AMAddress:
    """The ``AMAddress`` in a record of the AM operator's address stream (it must be this
    cluster's)."""
    address = AMAddress.from_json(value)
    if address.job_id != config.job_id:
        raise ClusterFailedError(f"ML cluster {config.name!r} of job {config.job_id} got the "
                                 f"AM address of job {address.job_id}")
    return address


class NodeFunction(FlatMapFunction):
    """One subtask per node of ``role`` (a role without input), fed the AM's address by a
    broadcast: registers, runs the entry process, watches it, all in that one call."""

    def __init__(self, config: ClusterConfig, role: str, entry_bytes: bytes,
                 channels: ChannelSpec | None = None) -> None:
        self.config = config
        self.role = role
        self.entry_bytes = entry_bytes
        self.channels = channels or ChannelSpec()
        self.index = 0
        self.attempt = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        worker_tuning.apply()
        self.index = subtask_index(runtime_context)
        self.attempt = attempt_number(runtime_context)

    def flat_map(self, value: Any) -> Iterator[Any]:
        runner = NodeRunner(self.config, self.role, self.index, self.attempt, self.entry_bytes,
                            channels=self.channels, am_address=am_address_of(value, self.config))
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
