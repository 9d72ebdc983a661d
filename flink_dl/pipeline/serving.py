"""``predict(table, pipeline_dir)``: serve the newest saved pipeline and follow new versions.

A running Flink job cannot recompile its SQL, so the fitted values do not go into the SQL
as literals here: they are fields of one parameter column, which a vectorized UDF fills
with the values of the version it currently holds (``ConstantRecorder``). The feature
expressions themselves still run in the JVM, with the same operations on the same doubles
as ``PipelineModel.transform``: the features are bit-identical. Every row carries the
version its parameters came from, and the model stage loads that version's model, so a
row's features and prediction always come from one version (``pipeline_version``).

A new version swaps in only when its structure is the one the job was built with (the
same stages and SQL apart from the fitted values: same categories, same number of splits,
same model inputs and outputs); a version that changes the structure is refused with an
error in the log, the job keeps serving the version it has, and a new job serves it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyflink.table import DataTypes, Table
from pyflink.table.expressions import col
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from flink_dl.errors import ConfigError
from flink_dl.flink.bundles import python_bundles_of
from flink_dl.flink.pyflink_adapter import table_env_of
from flink_dl.inference.api import ModelHandler
from flink_dl.inference.options import PredictOptions
from flink_dl.inference.shared import share_result
from flink_dl.log import EveryFewSeconds
from flink_dl.models.store import ModelStore
from flink_dl.pipeline.api import Model
from flink_dl.pipeline.learners import LearnerModel
from flink_dl.pipeline.pipeline import PipelineModel
from flink_dl.pipeline.reference import mark_served
from flink_dl.pipeline.sql import Column, columns_of
from flink_dl.pipeline.stages.base import ConstantRecorder, FeatureModel
from flink_dl.pipeline.stages.sql_transform import SQLTransform
from flink_dl.startup import worker_tuning

log = logging.getLogger(__name__)

#: The parameter column the feature stages read while serving.
PARAMS = "__flink_dl_pipeline"
#: The column that tags every served row with the pipeline version that made it.
VERSION_COLUMN = "pipeline_version"
_VERSION_FEATURE = "__flink_dl_pipeline_version"
#: The column that marks rows served by an untrained version (the model's prior): only in
#: jobs that start from a cold start (``Pipeline.untrained``).
PRIOR_COLUMN = "from_prior"
_PRIOR_FEATURE = "__flink_dl_from_prior"


def predict(table: Table, pipeline_dir: str | os.PathLike[str], *,
            options: PredictOptions | None = None, **settings: Any) -> Table:
    """``table`` through the newest pipeline saved in ``pipeline_dir`` (features, then the
    model's predictions when the last stage is one), plus ``pipeline_version``; new
    versions are picked up every ``poll_interval_s`` and swapped in atomically per row.
    When the newest version is a cold start (``Pipeline.untrained``) the rows also get
    ``from_prior`` (BOOLEAN): TRUE while the version serving them is still untrained, so
    its predictions are the model's prior.

    Args:
        options: a ``PredictOptions``, or its fields as keywords (``settings``):
        poll_interval_s: how often the job looks for a new version.
        model_wait_s: how long to wait for a first version to appear.
        max_latency_ms: a streaming job's latency budget, as in
            ``flink_dl.inference.operator.predict`` (``flink_dl.inference.latency``).
        set_batch_size: the model stage's throughput settings, as there.
    """
    options = PredictOptions.parse("flink_dl.pipeline.predict", settings, options)
    store = ModelStore(pipeline_dir)
    opened = store.wait_for_version(options.model_wait_s)
    pipeline = PipelineModel.from_version(opened)
    table = pipeline.conform(table)
    features, learner = _split(pipeline.stages)
    cold = pipeline.untrained
    taken = [c for c in (PARAMS, VERSION_COLUMN, *([PRIOR_COLUMN] if cold else []))
             if c in columns_of(table)]
    if taken:
        raise ConfigError(f"predict: the input already has column(s) {taken}, which predict "
                          "adds; rename them")
    plan, current = [], table
    for stage in features:  # planner only: each stage's input columns
        plan.append(columns_of(current))
        current = stage.transform(current)
    texts, recorder = structure(features, learner, plan)
    params = udf(ParameterUDF(str(pipeline_dir), plan, texts, opened.version,
                              list(recorder.values), options.poll_interval_s, cold),
                 result_type=DataTypes.ROW(
                     [DataTypes.FIELD("version", DataTypes.INT()),
                      DataTypes.FIELD("prior", DataTypes.BOOLEAN())]
                     + [DataTypes.FIELD(f"c{i}", _data_type(t))
                        for i, t in enumerate(recorder.types)]),
                 func_type="pandas")
    anchor = next(iter(columns_of(table)))
    current = _stamped(table.add_columns(params(col(anchor)).alias(PARAMS)))
    shared = ConstantRecorder(PARAMS)
    for stage in features:
        if isinstance(stage, FeatureModel):
            with stage.recording(shared):
                current = stage.transform(current)
        else:
            current = stage.transform(current)
            if PARAMS not in columns_of(current):
                raise ConfigError(f"predict: {stage!r} drops the pipeline's parameter column; "
                                  "select * (or the column "
                                  f"{PARAMS!r}) in SQLTransform statements to serve them")
    assert shared.values == recorder.values
    names = [n for n in columns_of(current) if n != PARAMS]
    current = current.select(*[col(n) for n in names],
                             col(PARAMS).get("version").alias(_VERSION_FEATURE),
                             *([col(PARAMS).get("prior").alias(_PRIOR_FEATURE)] if cold
                               else []))
    if learner is not None:
        from flink_dl.inference.operator import predict as run_predict

        handler = PipelineModelHandler(str(pipeline_dir), learner)
        current = run_predict(current, handler, options=options, share=False)
        names += list(learner.outputs)
    else:  # feature stages only: the budget's settings for their batches
        options.apply_latency_budget(table_env_of(table), DEFAULT_FEATURE_BATCH)
    # one parameter and one model operator whatever the number of queries of the result;
    # the model operator's bundles end within PARAMS_BUNDLE_MS too: a served row (and the
    # training sample joined from it) is not held back by Flink's 1 s bundle
    with python_bundles_of(table_env_of(table), PARAMS_BUNDLE_MS):
        shared = share_result(current.select(*[col(n) for n in names],
                                             col(_VERSION_FEATURE).alias(VERSION_COLUMN),
                                             *([col(_PRIOR_FEATURE).alias(PRIOR_COLUMN)]
                                               if cold else [])),
                              "flink_dl.pipeline.predict")
    return mark_served(shared, pipeline_dir)  # monitor: these are served features


#: The parameter UDF's Python bundle (ms) in a streaming job. It only stamps rows with the
#: version it holds, once per Arrow batch, and batches end with the bundle: with Flink's
#: 1 s bundle a new version waited up to a bundle there and another in the model operator.
PARAMS_BUNDLE_MS = 50


def _stamped(table: Table) -> Table:
    """The rows stamped by the parameter UDF, as one stream translated with bundles of
    ``PARAMS_BUNDLE_MS`` (``python_bundles_of``)."""
    with python_bundles_of(table_env_of(table), PARAMS_BUNDLE_MS):
        return share_result(table, "flink_dl.pipeline.predict")


#: Rows per bundle under a latency budget when the pipeline has no model stage.
DEFAULT_FEATURE_BATCH = 1024


def _split(stages: Sequence[Model]) -> tuple[list[Model], LearnerModel | None]:
    learner = stages[-1] if stages and isinstance(stages[-1], LearnerModel) else None
    features = list(stages[:-1] if learner is not None else stages)
    for stage in features:
        if not isinstance(stage, FeatureModel | SQLTransform):
            raise ConfigError(f"predict: stage {type(stage).__name__} cannot be served from a "
                              "pipeline directory (feature stages and SQLTransform, then at "
                              "most one model stage, last)")
    return features, learner


def structure(features: Sequence[Model], learner: LearnerModel | None,
              plan: Sequence[Mapping[str, Column]]) -> tuple[list[str], ConstantRecorder]:
    """The pipeline's SQL with its fitted values as parameter fields (what must not change
    for a version to swap in), and those values."""
    recorder = ConstantRecorder(PARAMS)
    texts: list[str] = []
    for stage, columns in zip(features, plan, strict=True):
        texts.append(f"{stage.kind} {sorted(stage.get_params().items())}")
        if isinstance(stage, FeatureModel):
            with stage.recording(recorder):
                texts += stage.sql_texts(columns)
    if learner is not None:
        texts.append(f"{learner.kind} {sorted(learner.get_params().items())}")
    return texts, recorder


def _data_type(sql_type: str) -> Any:
    return DataTypes.DOUBLE() if sql_type == "DOUBLE" else DataTypes.STRING()


@dataclass
class _Serving:
    """What a process serves for one pipeline directory and structure. Kept per process,
    not per UDF instance: PyFlink may build a new instance for a later bundle."""

    version: int
    values: list[float | str]
    untrained: bool = False
    refused: set[int] = field(default_factory=set)
    last_poll: float = 0.0


_SERVING: dict[tuple[str, str], _Serving] = {}
_SERVING_LOCK = threading.Lock()
#: pipeline directory -> version -> (handler, loaded model), per process.
_MODELS: dict[str, dict[int, tuple[ModelHandler, Any]]] = {}


class ParameterUDF(ScalarFunction):
    """Pandas UDF: the current version's number and fitted values, for every row. Not
    deterministic: the planner must call it once per row, never fold or repeat it."""

    def is_deterministic(self) -> bool:
        return False

    def __init__(self, pipeline_dir: str, plan: list[dict[str, Column]], texts: list[str],
                 version: int, values: list[float | str], poll_interval_s: float,
                 untrained: bool = False) -> None:
        self.pipeline_dir = pipeline_dir
        self.plan = plan
        self.texts = texts
        self.version = version
        self.values = values
        self.poll_interval_s = poll_interval_s
        self.untrained = untrained

    def open(self, function_context: FunctionContext) -> None:
        worker_tuning.apply()
        self._store = ModelStore(self.pipeline_dir)
        self._swaps = EveryFewSeconds(log)
        key = (self.pipeline_dir, hashlib.sha256("\n".join(self.texts).encode()).hexdigest())
        with _SERVING_LOCK:
            self._state = _SERVING.setdefault(
                key, _Serving(self.version, list(self.values), self.untrained))

    def eval(self, anchor: pd.Series) -> pd.DataFrame:
        with _SERVING_LOCK:
            self._maybe_swap(self._state)
            version, values = self._state.version, self._state.values
            untrained = self._state.untrained
        rows = len(anchor)
        data: dict[str, Any] = {"version": np.full(rows, version, dtype=np.int32),
                                "prior": np.full(rows, untrained, dtype=bool)}
        for index, value in enumerate(values):
            data[f"c{index}"] = np.full(rows, value) if isinstance(value, float) \
                else pd.Series([value] * rows, dtype=object)
        return pd.DataFrame(data)

    def _maybe_swap(self, state: _Serving) -> None:
        """Serve the newest version with the job's structure (a newer one that changes the
        structure is refused once, with an error in the log)."""
        if time.monotonic() - state.last_poll < self.poll_interval_s:
            return
        state.last_poll = time.monotonic()
        latest = self._store.latest_number()
        if latest is None or latest == state.version or latest in state.refused:
            return
        for number in reversed(self._store.version_numbers()):
            if number <= state.version:
                return
            if number in state.refused:
                continue
            served = self._values_of(number, state)
            if served is not None:
                state.values, state.untrained = served
                state.version = number
                self._swaps.log("now serving pipeline version %d from %s", number,
                                self.pipeline_dir)
                return

    def _values_of(self, number: int, state: _Serving
                   ) -> tuple[list[float | str], bool] | None:
        """Version ``number``'s fitted values and whether it is untrained, or ``None``
        (refused) when it cannot be served or changes the structure."""
        try:
            pipeline = PipelineModel.from_version(self._store.open(number))
            features, learner = _split(pipeline.stages)
            texts, recorder = structure(features, learner, self.plan)
        except Exception as exc:
            log.error("pipeline version %d in %s cannot be served (%s); still serving "
                      "version %d", number, self.pipeline_dir, exc, state.version)
            state.refused.add(number)
            return None
        if texts != self.texts:
            changed = next((new for old, new in zip(self.texts, texts, strict=False)
                            if old != new), "the number of stages")
            log.error("pipeline version %d in %s changes the pipeline's structure (first "
                      "difference: %s); this job does not serve it; start a new job to serve "
                      "it", number, self.pipeline_dir, changed[:300])
            state.refused.add(number)
            return None
        return list(recorder.values), pipeline.untrained


class PipelineModelHandler(ModelHandler):
    """The pipeline's model stage: each row is predicted by the model of the pipeline
    version its features came from (its ``_VERSION_FEATURE``)."""

    def __init__(self, pipeline_dir: str, learner: LearnerModel) -> None:
        self.pipeline_dir = pipeline_dir
        self.model_path = pipeline_dir
        self.features = [*learner.features, _VERSION_FEATURE]
        self.outputs = dict(learner.outputs)
        self.batch_size = learner.batch_size
        self.batch_invariant = False  # each version's own handler pads
        self.num_threads = 1

    def load(self, version: Any) -> dict[int, tuple[ModelHandler, Any]]:
        return _MODELS.setdefault(self.pipeline_dir, {})

    def _model(self, cache: dict[int, tuple[ModelHandler, Any]], number: int
               ) -> tuple[ModelHandler, Any]:
        with _SERVING_LOCK:
            return self._model_locked(cache, number)

    def _model_locked(self, cache: dict[int, tuple[ModelHandler, Any]], number: int
                      ) -> tuple[ModelHandler, Any]:
        if number not in cache:
            opened = ModelStore(self.pipeline_dir).open(number)
            learner = PipelineModel.from_version(opened).stages[-1]
            assert isinstance(learner, LearnerModel)
            handler = learner.handler()
            handler.setup()
            cache[number] = (handler, handler.load(None))
            keep = {number, max(cache)}  # this one and the newest
            for old in [v for v in cache if v not in keep]:
                del cache[old]
            log.debug("pipeline version %d: model loaded from %s", number,
                     Path(opened.path).name)
        return cache[number]

    def run(self, model: dict[int, tuple[ModelHandler, Any]],
            columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from flink_dl.inference.runner import run_batch

        versions = np.asarray(columns[_VERSION_FEATURE])
        out: dict[str, np.ndarray] = {}
        for number in np.unique(versions):
            mask = versions == number
            handler, loaded = self._model(model, int(number))
            part = run_batch(handler, loaded, {k: np.asarray(v)[mask]
                                               for k, v in columns.items()})
            for name, values in part.items():
                if name not in out:
                    out[name] = np.zeros((len(versions), *values.shape[1:]),
                                         dtype=values.dtype)
                out[name][mask] = values
        return out
