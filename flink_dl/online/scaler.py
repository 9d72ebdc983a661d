"""``OnlineStandardScaler``: a standard scaler whose statistics keep learning from a stream.

``fit(table)`` is ``StandardScaler``'s batch fit (the start of the loop). ``fit_stream``
aggregates each event-time window in Flink SQL (count, mean and population variance per
column, in the JVM), merges the windows into running statistics (Chan et al.'s parallel
update, numerically stable) and publishes each update as a new version of the pipeline
directory: the same stages with this scaler's ``mean``/``std`` replaced. The structure
does not change, so ``flink_dl.pipeline.predict`` swaps the new statistics in as it does
new models.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import DataStream
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.table import Table

from flink_dl.errors import ConfigError, MissingColumnError
from flink_dl.flink.pyflink_adapter import table_env_of
from flink_dl.log import EveryFewSeconds
from flink_dl.online.labels import duration_seconds, event_time_column
from flink_dl.pipeline.api import register
from flink_dl.pipeline.sql import as_double, columns_of, interval_literal, is_missing, quote
from flink_dl.pipeline.stages.scalers import StandardScaler, StandardScalerModel
from flink_dl.startup import worker_tuning

log = logging.getLogger(__name__)

#: Rows of the stream ``fit_stream`` returns: the version published and the rows behind it.
PUBLISHED_FIELDS = ["version", "rows", "window_end"]
#: ``fit_stream``'s default window (seconds of processing time): the statistics reach the
#: served features within about this long (see docs/benchmarks.md, "Online learning
#: against River").
PROCESSING_WINDOW_S = 0.25
#: The processing-time attribute ``fit_stream`` adds when ``time`` is None.
PROCESSING_TIME = "__flink_dl_processing_time"


@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations (M2) of one column, mergeable."""

    count: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    def merge(self, count: float, mean: float, variance: float) -> None:
        """Add a batch of ``count`` values with that ``mean`` and population ``variance``."""
        if count <= 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.m2 += variance * count + delta * delta * self.count * count / total
        self.mean += delta * count / total
        self.count = total

    @property
    def std(self) -> float:
        """Population standard deviation (0 before any value)."""
        return math.sqrt(max(self.m2, 0.0) / self.count) if self.count else 0.0


@dataclass
class ScalerState:
    """The running statistics of every column (what a restore brings back)."""

    columns: list[RunningMoments] = field(default_factory=list)


@register
class OnlineStandardScaler(StandardScaler):
    """``StandardScaler`` that keeps learning: ``fit`` on a bounded table, then
    ``fit_stream(stream, pipeline_dir)`` to update a saved pipeline's statistics from an
    unbounded one (see the module docstring)."""

    kind = "OnlineStandardScaler"

    def untrained(self, table: Table) -> StandardScalerModel:
        """Mean 0 and std 1 for every column (it scales nothing) until ``fit_stream``'s
        first window replaces them (``prior_count=0``)."""
        from flink_dl.pipeline.pipeline import require_table

        require_table("OnlineStandardScaler.untrained", table)
        columns = columns_of(table)
        missing = [c for c in self.input_cols if c not in columns]
        if missing:
            raise MissingColumnError(f"OnlineStandardScaler.untrained: column(s) {missing} "
                                     f"are not in the input; it has {list(columns)}")
        count = len(self.input_cols)
        return StandardScalerModel(self.input_cols, [0.0] * count, [1.0] * count,
                                   output_cols=self.output_cols, with_mean=self.with_mean,
                                   with_std=self.with_std, handle_invalid=self.handle_invalid)

    def fit_stream(self, samples: Table, pipeline_dir: str | os.PathLike[str], *,
                   window: float | timedelta = PROCESSING_WINDOW_S, time: str | None = None,
                   prior_count: int = 0) -> DataStream:
        """Publish new statistics for this scaler's columns after every ``window`` of
        ``samples``; returns the stream of publications (``PUBLISHED_FIELDS``), which runs
        with the job (``flink_dl.execute``).

        ``time``: ``None`` (default): windows of processing time, each published as soon
        as it ends (the statistics lag the stream by about one window, whatever its
        watermark); an event-time column: windows of event time, published when the
        watermark passes their end (reproducible on a replay; they lag by the
        watermark's delay too). The statistics are running ones either way: a window only
        says how often they are published.

        ``prior_count``: how many rows the saved statistics stand for (0: the stream's
        statistics replace them at the first window; larger: they blend in).
        """
        from flink_dl.pipeline.pipeline import PipelineModel, require_table

        require_table("OnlineStandardScaler.fit_stream", samples)
        seconds = duration_seconds("OnlineStandardScaler.fit_stream: window", window)
        if isinstance(prior_count, bool) or not isinstance(prior_count, int) or prior_count < 0:
            raise ConfigError(f"OnlineStandardScaler.fit_stream: prior_count must be an "
                              f"integer >= 0, got {prior_count!r}")
        columns = columns_of(samples)
        missing = [c for c in self.input_cols if c not in columns]
        if missing:
            raise MissingColumnError(f"OnlineStandardScaler.fit_stream: column(s) {missing} "
                                     f"are not in the stream; it has {list(columns)}")
        if time is None:
            samples, ts = with_processing_time(samples, list(self.input_cols))
        else:
            ts = event_time_column(samples, time, "stream", keyword="time",
                                   where="OnlineStandardScaler.fit_stream")
        current = PipelineModel.load(pipeline_dir)
        stage = scaler_stage(current.stages, self.input_cols, str(pipeline_dir))
        start = current.stages[stage]
        assert isinstance(start, StandardScalerModel)
        moments = []
        for x in self.input_cols:
            value = f"CASE WHEN {is_missing(columns[x])} THEN CAST(NULL AS DOUBLE) ELSE " \
                    f"{as_double(x)} END"
            moments += [f"COUNT({value}) AS {quote('n_' + x)}",
                        f"AVG({value}) AS {quote('m_' + x)}",
                        f"VAR_POP({value}) AS {quote('v_' + x)}"]
        windows = table_env_of(samples).sql_query(
            f"SELECT window_end, COUNT(*) AS `rows`, {', '.join(moments)} FROM "
            f"TABLE(TUMBLE(TABLE {samples}, DESCRIPTOR({quote(ts)}), "
            f"{interval_literal(seconds)})) GROUP BY window_start, window_end")
        prior = [(float(prior_count), m, s * s) for m, s in zip(start.mean, start.std,
                                                              strict=True)]
        published = (
            table_env_of(samples).to_data_stream(windows)
            .key_by(lambda row: 0, key_type=Types.INT())
            .process(PublishScaler(str(pipeline_dir), list(self.input_cols), prior),
                     output_type=Types.ROW_NAMED(
                         PUBLISHED_FIELDS, [Types.INT(), Types.LONG(), Types.STRING()]))
            .set_parallelism(1).name("online-standard-scaler"))
        from flink_dl.flink.builder import discarding_sink

        published.sink_to(discarding_sink()).set_parallelism(1)
        return published


def with_processing_time(table: Table, columns: list[str]) -> tuple[Table, str]:
    """``columns`` of ``table`` with a processing-time attribute added (``PROCTIME()``,
    through a DataStream: a derived Table cannot declare one); and its name."""
    from pyflink.table import Schema
    from pyflink.table.expressions import col

    t_env = table_env_of(table)
    stream = t_env.to_data_stream(table.select(*[col(c) for c in columns]))
    with_time = t_env.from_data_stream(
        stream, Schema.new_builder().column_by_expression(PROCESSING_TIME, "PROCTIME()")
        .build())
    return with_time, PROCESSING_TIME


def scaler_stage(stages: Sequence[Any], input_cols: Sequence[str], where: str) -> int:
    """The index of the ``StandardScalerModel`` reading ``input_cols`` (``ConfigError``
    naming the pipeline directory when there is none)."""
    for index, stage in enumerate(stages):
        if isinstance(stage, StandardScalerModel) and list(stage.input_cols) == list(input_cols):
            return index
    raise ConfigError(f"OnlineStandardScaler.fit_stream: the newest pipeline in {where} has "
                      f"no StandardScaler stage on columns {list(input_cols)}; fit and save a "
                      "pipeline with one first")


def publish_statistics(pipeline_dir: str, input_cols: Sequence[str],
                       moments: Sequence[RunningMoments]) -> int:
    """Publish the newest pipeline again with the scaler's ``mean``/``std`` replaced;
    returns the new version number."""
    from flink_dl.pipeline.pipeline import (
        ONLINE_KEEP_FOR_S,
        ONLINE_KEEP_VERSIONS,
        PipelineModel,
        pipeline_lock,
    )

    with pipeline_lock(pipeline_dir):
        current = PipelineModel.load(pipeline_dir)
        index = scaler_stage(current.stages, input_cols, pipeline_dir)
        old = current.stages[index]
        replaced = StandardScalerModel(
            # a std of 0 only centres, as 1 does; 1 keeps the SQL (the structure) the same
            old.input_cols, [m.mean for m in moments], [m.std or 1.0 for m in moments],
            output_cols=old.output_cols, with_mean=old.with_mean, with_std=old.with_std,
            handle_invalid=old.handle_invalid)
        stages = [*current.stages[:index], replaced, *current.stages[index + 1:]]
        version = PipelineModel(stages, current.input_schema, current.reference,
                                untrained=current.untrained).save(
            pipeline_dir, keep_versions=ONLINE_KEEP_VERSIONS, keep_for_s=ONLINE_KEEP_FOR_S)
    return version.version


class PublishScaler(KeyedProcessFunction):
    """Merges each window's moments into the running ones (keyed state: they survive a
    restore) and publishes a pipeline version."""

    def __init__(self, pipeline_dir: str, input_cols: list[str],
                 prior: list[tuple[float, float, float]]) -> None:
        self.pipeline_dir = pipeline_dir
        self.input_cols = input_cols
        self.prior = prior

    def open(self, runtime_context: RuntimeContext) -> None:
        worker_tuning.apply()
        from pyflink.datastream.state import ValueStateDescriptor

        self.state = runtime_context.get_state(
            ValueStateDescriptor("flink_dl_scaler", Types.PICKLED_BYTE_ARRAY()))
        self._published = EveryFewSeconds(log)  # a version per window: a line per 30 s

    def process_element(self, value: Any, ctx: Any) -> Any:
        moments: list[RunningMoments] | None = self.state.value()
        if moments is None:
            moments = []
            for count, mean, variance in self.prior:
                running = RunningMoments()
                running.merge(count, mean, variance)
                moments.append(running)
        for running, name in zip(moments, self.input_cols, strict=True):
            count = value[f"n_{name}"]
            if count:
                running.merge(float(count), float(value[f"m_{name}"]),
                              float(value[f"v_{name}"] or 0.0))
        self.state.update(moments)
        if not any(m.count for m in moments):
            return
        version = publish_statistics(self.pipeline_dir, self.input_cols, moments)
        self._published.log("OnlineStandardScaler: published pipeline version %d (%d rows "
                            "in the window)", version, value["rows"])
        yield Row(version, int(value["rows"]), str(value["window_end"]))
