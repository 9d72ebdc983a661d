"""``train``: distributed PyTorch training inside a Flink job."""

from __future__ import annotations

import logging
from typing import Any

from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.cluster.context import NodeContext
from flink_dl.config import Timeouts
from flink_dl.flink.builder import add_am_role, add_role
from flink_dl.flink.entry import serialize_entry
from flink_dl.pytorch.config import WORKER_ROLE, TorchConfig

log = logging.getLogger(__name__)


class TorchEntry:
    """The node entry of a training rank: process group up, user entry, process group down.

    Holds the user's entry as bytes (``serialize_entry``) so that user code travels by value.
    """

    def __init__(self, user_entry: bytes, options: dict[str, Any]) -> None:
        self.user_entry = user_entry
        self.options = options

    def __call__(self, node: NodeContext) -> Any:
        import cloudpickle

        from flink_dl.config import resolve_entry
        from flink_dl.pytorch.context import TorchContext
        from flink_dl.pytorch.process_group import destroy_process_group, init_process_group

        entry = resolve_entry(cloudpickle.loads(self.user_entry))
        group = init_process_group(node, self.options["backend"],
                                   self.options["setup_timeout_s"],
                                   self.options["collective_timeout_s"])
        try:
            return entry(TorchContext(node, group, self.options))
        finally:
            destroy_process_group()


def train(env: StreamExecutionEnvironment, input: Table | DataStream | None,
          config: TorchConfig) -> DataStream:
    """Add a PyTorch training cluster of ``config.world_size`` ranks to ``env``.

    ``input`` (a Table, a DataStream of named rows, or ``None``) is split across the ranks as
    Arrow batches; each rank runs ``config.entry(ctx: TorchContext)``. Returns the stream of
    training events (``EVENTS_SCHEMA``): one ``"model"`` row per published model version and
    one ``"metrics"`` row per ``ctx.report``. Run the job with ``flink_dl.execute(env)`` or
    by collecting the stream.
    """
    from flink_dl.pytorch.context import EVENTS_SCHEMA

    config.validate()
    options = {
        "backend": config.backend, "model_dir": config.model_dir,
        "keep_versions": config.keep_versions, "export_every_steps": config.export_every_steps,
        "export_every_s": config.export_every_s,
        "setup_timeout_s": Timeouts.from_value(config.timeouts).rendezvous,
        "collective_timeout_s": config.collective_timeout_s,
    }
    cluster = config.cluster_config(TorchEntry(serialize_entry(config.entry), options))
    add_am_role(env, cluster)  # validates the cluster config
    return add_role(env, cluster, WORKER_ROLE, input,
                    epochs=config.epochs if input is not None else 1,
                    output_schema=EVENTS_SCHEMA, channel_capacity=config.channel_capacity)
