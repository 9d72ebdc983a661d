"""``train``: distributed PyTorch training inside a Flink job."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.cluster.context import NodeContext
from flink_dl.pytorch.config import TorchConfig, TorchOptions
from flink_dl.training.build import build
from flink_dl.training.entry import TrainingEntry, teardown

log = logging.getLogger(__name__)


class TorchEntry(TrainingEntry):
    """The node entry of a training rank: process group up, user entry, process group down."""

    @contextlib.contextmanager
    def session(self, node: NodeContext) -> Iterator[Any]:
        from flink_dl.pytorch.context import TorchContext
        from flink_dl.pytorch.process_group import destroy_process_group, init_process_group

        if node.world_size > 1:
            preload_ddp_imports()
        options = self.options
        assert isinstance(options, TorchOptions)
        group = init_process_group(node, options.backend, options.timeouts.rendezvous,
                                   options.collective_timeout_s)
        try:
            yield TorchContext(node, group, options)
        finally:
            teardown(destroy_process_group, "destroying the process group")


def preload_ddp_imports() -> threading.Thread:
    """Import what ``DistributedDataParallel`` imports on first use (``torch._dynamo``,
    about 2 s of CPU) in a thread, while the process group forms: the rank then waits
    on its peers and its imports at the same time, not one after the other."""

    def load() -> None:
        try:
            import torch._dynamo  # noqa: F401
        except Exception:  # DDP imports it again and reports any error itself
            log.debug("preloading torch._dynamo failed", exc_info=True)

    thread = threading.Thread(target=load, name="flink-dl-preload-ddp", daemon=True)
    thread.start()
    return thread


def train(env: StreamExecutionEnvironment, input: Table | DataStream | None,
          config: TorchConfig) -> DataStream:
    """Add a PyTorch training cluster of ``config.world_size`` ranks to ``env``.

    ``input`` (a Table, a DataStream of named rows, or ``None``) is split across the ranks as
    Arrow batches; each rank runs ``config.entry(ctx: TorchContext)``. Returns the stream of
    training events (``EVENTS_SCHEMA``): one ``"model"`` row per published model version and
    one ``"metrics"`` row per ``ctx.report``. Run the job with ``flink_dl.execute(env)`` or
    by collecting the stream.
    """
    workers, _ = build(env, input, config, TorchEntry)
    return workers
