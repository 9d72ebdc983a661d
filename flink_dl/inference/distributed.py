"""Distributed inference: an ML cluster of ``nodes`` processes, each predicting its share.

For models that need a process of their own (memory, a GPU, their own threads): the input
is split across the nodes as Arrow batches through shared memory; each node loads the model
once, predicts, and writes the input columns plus the predictions back to Flink.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.cluster.context import NodeContext
from flink_dl.config import ClusterConfig, Timeouts
from flink_dl.errors import ConfigError
from flink_dl.flink.builder import add_am_role, add_role
from flink_dl.flink.feed import arrow_schema_of, as_table
from flink_dl.inference.api import ModelHandler, appended_schema
from flink_dl.inference.options import PredictOptions

PREDICTOR_ROLE = "predictor"


class PredictEntry:
    """Node entry: load the handler's model, predict every input batch, write rows out."""

    def __init__(self, handler: ModelHandler, options: PredictOptions) -> None:
        self.handler = handler
        self.options = options

    def __call__(self, ctx: NodeContext) -> dict[str, Any]:
        from flink_dl.channel.features import numeric_column
        from flink_dl.inference.runner import ModelRunner

        runner = ModelRunner.of(self.handler, self.options)
        runner.open()
        for batch in ctx.batches():
            inputs = {f: numeric_column(f, batch.column(f)) for f in self.handler.features}
            out = runner.predict(inputs)
            columns: dict[str, Any] = {n: batch.column(n) for n in batch.schema.names}
            columns.update({k: _arrow_column(v) for k, v in out.items()})
            ctx.write(columns)
        return {"rows": runner.rows, "reloads": runner.reloads}


def _arrow_column(values: Any) -> Any:
    return list(values) if getattr(values, "ndim", 1) > 1 else values


def predict_distributed(env: StreamExecutionEnvironment, input: Table | DataStream,
                        handler: ModelHandler, nodes: int, *,
                        timeouts: Timeouts | dict[str, float] | None = None,
                        name: str = "predict", channel_capacity: int = 8 * 1024 * 1024,
                        options: PredictOptions | None = None, **settings: Any) -> DataStream:
    """Predict with an ML cluster of ``nodes`` processes; returns the input rows with the
    prediction columns appended, as a DataStream of named rows. ``options`` (or its
    fields as keywords): ``PredictOptions``' ``poll_interval_s`` and ``model_wait_s``."""
    options = PredictOptions.parse("predict_distributed", settings, options)
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise ConfigError(f"predict_distributed: nodes must be an integer >= 1, got {nodes!r}")
    table = as_table(env, input, PREDICTOR_ROLE)
    schema = arrow_schema_of(table)
    out_schema = appended_schema(handler, schema, "predict_distributed")
    full = pa.schema(list(schema) + list(out_schema))
    config = ClusterConfig(roles={PREDICTOR_ROLE: nodes},
                           entry=PredictEntry(handler, options),
                           timeouts=timeouts, name=name)
    add_am_role(env, config)
    return add_role(env, config, PREDICTOR_ROLE, table, output_schema=full,
                    channel_capacity=channel_capacity)
