"""In-operator batched inference: a vectorized (pandas) UDF that holds the model.

Flink hands the UDF Arrow batches (``python.fn-execution.arrow.batch.size`` rows, which
``predict`` sets to at least ``TRANSFER_ROWS``); the model is loaded once per subtask in
``open`` and runs on batches of the handler's ``batch_size``, never row by row.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyflink.datastream import DataStream
from pyflink.table import DataTypes, StreamTableEnvironment, Table
from pyflink.table.expressions import col
from pyflink.table.types import DataType
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from flink_dl.errors import ConfigError
from flink_dl.flink.feed import arrow_schema_of
from flink_dl.flink.pyflink_adapter import env_of_stream, table_env_of
from flink_dl.inference.api import ModelHandler, appended_schema
from flink_dl.inference.options import PredictOptions
from flink_dl.inference.runner import ModelRunner
from flink_dl.inference.shared import share_result
from flink_dl.startup import loopback_launcher, worker_isolation, worker_tuning

log = logging.getLogger(__name__)

_PRED = "__flink_dl_prediction"

#: Rows per Arrow batch between Flink and the predict UDF (at least the model's batch).
#: Measured on W3 (2 cores, process mode): 4,096-row batches ran at ~100k rows/s, 16k-32k
#: at ~300k+ (the UDF round trip costs per batch); the rows are still flushed at every
#: bundle end (``python.fn-execution.bundle.time``, 1 s by default), so latency is bounded.
TRANSFER_ROWS = 32768
#: The bundle (rows in flight between the JVM and the Python worker) holds this many batches.
BUNDLE_BATCHES = 10
#: Batch runtime mode (offline scoring): bundles of this many batches, ending after at most
#: ``BATCH_MODE_BUNDLE_MS``. At every bundle end the JVM stops feeding until the Python
#: worker has returned every result, so the pipeline drains and refills; on W3 (1M rows,
#: parallelism 1) 1 s bundles of 10 batches ran at 0.57 of plain PyTorch, these at
#: 0.72-0.76. Only in batch mode: a streaming job (even over a bounded source) keeps 1 s
#: bundles, since its settings also hold for the environment's later jobs, such as an ML
#: cluster, whose operators' output waits for bundle ends.
BATCH_MODE_BUNDLE_BATCHES = 100
BATCH_MODE_BUNDLE_MS = 10_000


def flink_data_type(name: str, arrow_type: pa.DataType) -> DataType:
    """The Flink Table type of an output column of ``arrow_type``."""
    simple = [
        (pa.types.is_int8, DataTypes.TINYINT()), (pa.types.is_int16, DataTypes.SMALLINT()),
        (pa.types.is_int32, DataTypes.INT()), (pa.types.is_int64, DataTypes.BIGINT()),
        (pa.types.is_float32, DataTypes.FLOAT()), (pa.types.is_float64, DataTypes.DOUBLE()),
        (pa.types.is_boolean, DataTypes.BOOLEAN()), (pa.types.is_string, DataTypes.STRING()),
    ]
    for check, data_type in simple:
        if check(arrow_type):
            return data_type
    if pa.types.is_list(arrow_type):
        return DataTypes.ARRAY(flink_data_type(f"{name}[]", arrow_type.value_type))
    raise ConfigError(f"output column {name!r}: Arrow type {arrow_type} has no Flink Table "
                      "type here; use ints, floats, bools, strings or lists of them")


class PredictUDF(ScalarFunction):
    """Pandas UDF: feature columns in, a ROW of prediction columns out."""

    def __init__(self, handler: ModelHandler, options: PredictOptions) -> None:
        self.handler = handler
        self.options = options
        self.runner: ModelRunner | None = None

    def open(self, function_context: FunctionContext) -> None:
        worker_tuning.apply()
        self.runner = ModelRunner.of(self.handler, self.options)
        self.runner.open()

    def eval(self, *columns: pd.Series) -> pd.DataFrame | pd.Series:
        assert self.runner is not None
        inputs = {name: _series_to_numpy(series) for name, series in
                  zip(self.handler.features, columns, strict=True)}
        out = self.runner.predict(inputs)
        if len(out) == 1:  # one output column: a plain (not ROW) result, cheaper to move
            return pd.Series(_as_column(next(iter(out.values()))))
        return pd.DataFrame({k: _as_column(v) for k, v in out.items()})


def _series_to_numpy(series: pd.Series) -> np.ndarray:
    values = series.to_numpy()
    if values.dtype == object and len(values) and isinstance(values[0], np.ndarray | list):
        return np.stack([np.asarray(v) for v in values])  # ARRAY column -> (rows, width)
    return values


def _as_column(values: np.ndarray) -> np.ndarray | list:
    return list(values) if values.ndim > 1 else values


def predict(input: Table | DataStream, handler: ModelHandler, *,
            options: PredictOptions | None = None, share: bool = True,
            **settings: Any) -> Table | DataStream:
    """The input with ``handler``'s prediction columns appended (a Table for a Table, a
    DataStream of named rows for a DataStream).

    Args:
        options: a ``PredictOptions``, or its fields as keywords (``settings``):
        poll_interval_s: how often a handler that follows a model directory checks for a
            new version.
        model_wait_s: how long to wait for a first version to appear in that directory.
        set_batch_size: set the job's ``python.fn-execution.arrow.batch.size`` to
            ``max(handler.batch_size, TRANSFER_ROWS)`` and its bundle to at least
            ``BUNDLE_BATCHES`` such batches (they apply to every pandas UDF of the job);
            the model still runs ``handler.batch_size`` rows at a time. When the
            job runs in batch mode (offline scoring, ``EnvironmentSettings.in_batch_mode()``),
            bundles are longer:
            ``BATCH_MODE_BUNDLE_BATCHES`` batches or ``BATCH_MODE_BUNDLE_MS``.
        max_latency_ms: a streaming job's latency budget from a row's arrival to its
            prediction: sets the buffer timeout, the Python bundle and Arrow batch to end
            at one model batch or a quarter of the budget, whichever comes first
            (``flink_dl.inference.latency``; it replaces ``set_batch_size``'s settings).
        share: hand back a Table over one stream of the results, so that any number of
            queries of it read one model operator (``flink_dl.inference.shared``); a
            caller that builds on the result shares its own result instead.
    """
    options = PredictOptions.parse("predict", settings, options)
    table, t_env = _as_table(input)
    loopback_launcher.apply_to_table_env(t_env)
    worker_isolation.apply_to_table_env(t_env)
    schema = arrow_schema_of(table)
    out_schema = appended_schema(handler, schema, "predict")
    if not options.apply_latency_budget(t_env, handler.batch_size) and options.set_batch_size:
        _set_throughput_settings(t_env, max(handler.batch_size, TRANSFER_ROWS))
    single = len(out_schema) == 1
    result_type = flink_data_type(out_schema[0].name, out_schema[0].type) if single else \
        DataTypes.ROW([DataTypes.FIELD(f.name, flink_data_type(f.name, f.type))
                       for f in out_schema])
    fn = udf(PredictUDF(handler, options), result_type=result_type,
             func_type="pandas")
    # DECIMAL features become DOUBLE in the JVM (cheaper than Decimal objects in pandas).
    predictions = fn(*[col(f).cast(DataTypes.DOUBLE()) if pa.types.is_decimal(schema.field(f).type)
                       else col(f) for f in handler.features])
    if single:
        result = table.add_columns(predictions.alias(out_schema[0].name))
    else:
        predicted = table.add_columns(predictions.alias(_PRED))
        result = predicted.select(*[col(n) for n in schema.names],
                                  *[col(_PRED).get(n).alias(n) for n in out_schema.names])
    if isinstance(input, DataStream):
        return t_env.to_data_stream(result)
    return share_result(result, "predict") if share else result


def _set_throughput_settings(t_env: StreamTableEnvironment, rows: int) -> None:
    """Arrow batches of ``rows``; bundles of ``BUNDLE_BATCHES`` of them, or in batch runtime
    mode ``BATCH_MODE_BUNDLE_BATCHES`` and up to ``BATCH_MODE_BUNDLE_MS`` (a bundle time the
    user set is kept; a bundle size is only raised)."""
    config = t_env.get_config()
    config.set("python.fn-execution.arrow.batch.size", str(rows))
    batch_mode = config.get("execution.runtime-mode", "streaming").strip().lower() == "batch"
    batches = BATCH_MODE_BUNDLE_BATCHES if batch_mode else BUNDLE_BATCHES
    if int(config.get("python.fn-execution.bundle.size", "100000")) < batches * rows:
        config.set("python.fn-execution.bundle.size", str(batches * rows))
    if batch_mode and config.get("python.fn-execution.bundle.time", "") == "":
        config.set("python.fn-execution.bundle.time", str(BATCH_MODE_BUNDLE_MS))
    log.debug("predict (%s mode): Arrow batches of %d rows, bundles of %s rows or %s ms",
              "batch" if batch_mode else "streaming", rows,
              config.get("python.fn-execution.bundle.size", "?"),
              config.get("python.fn-execution.bundle.time", "1000"))


def _as_table(input: Table | DataStream) -> tuple[Table, StreamTableEnvironment]:
    from flink_dl.flink.planner_threads import install as plan_on_any_thread
    from flink_dl.startup import client_logging

    plan_on_any_thread()
    client_logging.install()
    if isinstance(input, Table):
        return input, table_env_of(input)
    if isinstance(input, DataStream):
        from flink_dl.flink.feed import as_table

        table = as_table(env_of_stream(input), input, "predict")
        return table, table_env_of(table)
    raise ConfigError(f"predict: input must be a pyflink Table or DataStream, got "
                      f"{type(input).__name__}")
