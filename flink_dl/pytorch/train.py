"""``train``: distributed PyTorch training inside a Flink job."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.cluster.context import NodeContext
from flink_dl.pytorch.config import TorchConfig
from flink_dl.training.build import build
from flink_dl.training.entry import TrainingEntry, teardown


class TorchEntry(TrainingEntry):
    """The node entry of a training rank: process group up, user entry, process group down."""

    @contextlib.contextmanager
    def session(self, node: NodeContext) -> Iterator[Any]:
        from flink_dl.pytorch.context import TorchContext
        from flink_dl.pytorch.process_group import destroy_process_group, init_process_group

        group = init_process_group(node, self.options["backend"],
                                   self.options["setup_timeout_s"],
                                   self.options["collective_timeout_s"])
        try:
            yield TorchContext(node, group, self.options)
        finally:
            teardown(destroy_process_group, "destroying the process group")


def train(env: StreamExecutionEnvironment, input: Table | DataStream | None,
          config: TorchConfig) -> DataStream:
    """Add a PyTorch training cluster of ``config.world_size`` ranks to ``env``.

    ``input`` (a Table, a DataStream of named rows, or ``None``) is split across the ranks as
    Arrow batches; each rank runs ``config.entry(ctx: TorchContext)``. Returns the stream of
    training events (``EVENTS_SCHEMA``): one ``"model"`` row per published model version and
    one ``"metrics"`` row per ``ctx.report``. Run the job with ``flink_dl.execute(env)`` or
    by collecting the stream.
    """
    workers, _ = build(env, input, config, TorchEntry,
                       extra_options={"backend": config.backend})
    return workers
