"""``Pipeline`` (an Estimator of stages) and ``PipelineModel`` (its fitted, saveable form).

``Pipeline(stages).fit(table)`` fits the stages in order, each on the output of the ones
before it; consecutive feature estimators that do not read each other's outputs are fitted
together in one Flink job. ``PipelineModel.save(path)`` publishes every stage's parameters
(``pipeline.json``) and files (trained weights) as one version of a ``ModelStore``
directory: written aside, checksummed, renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyflink.table import Table

from flink_dl.errors import ConfigError, FeatureTypeError, NotFoundError
from flink_dl.models.store import ModelStore, ModelVersion
from flink_dl.pipeline.api import (
    Estimator,
    Model,
    Stage,
    Transformer,
    require_table,
    stage_class,
)
from flink_dl.pipeline.sql import Column, columns_of
from flink_dl.pipeline.stages.base import FeatureEstimator

if TYPE_CHECKING:
    from flink_dl.pipeline.reference import Reference

log = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.json"
#: The lock file publishers of a pipeline directory hold (``pipeline_lock``).
PUBLISH_LOCK = ".publish.lock"
FORMAT_VERSION = 1
#: Pipeline versions an online learner's publishing keeps (``publish_model``, the online
#: scaler): the newest 20, and every version younger than 30 s (a serving job may still be
#: loading the model of a version it has just swapped in).
ONLINE_KEEP_VERSIONS = 20
ONLINE_KEEP_FOR_S = 30.0


class Pipeline(Estimator):
    """Stages fitted in order: ``Pipeline([...]).fit(table) -> PipelineModel``.

    ``reference_bins``: when the last stage is a model, its input features as served
    (after the feature stages) get reference histograms of that many quantile bins on the
    training table (two more Flink jobs), saved with the pipeline:
    ``flink_dl.online.monitor(..., reference=pipeline_dir)`` measures drift against them.
    ``None``: none."""

    kind = "Pipeline"

    def __init__(self, stages: Sequence[Stage], *, reference_bins: int | None = 10) -> None:
        if isinstance(stages, Stage) or not stages:
            raise ConfigError("Pipeline: stages must be a non-empty list of stages")
        for index, stage in enumerate(stages):
            if not isinstance(stage, Estimator | Transformer):
                raise ConfigError(f"Pipeline: stage {index} is a {type(stage).__name__}, not "
                                  "an Estimator or Transformer")
        self.stages = list(stages)
        self.reference_bins = reference_bins

    def get_params(self) -> dict[str, Any]:
        return {"stages": [type(s).__name__ for s in self.stages]}

    def fit(self, table: Table) -> PipelineModel:
        """Fit every stage on ``table`` (bounded) with Flink; the fitted pipeline."""
        require_table("Pipeline.fit", table)
        input_columns = columns_of(table)
        models: list[Model] = []
        current, jobs, index = table, 0, 0
        while index < len(self.stages):
            stage = self.stages[index]
            if isinstance(stage, FeatureEstimator):
                group = _independent_group(self.stages, index, columns_of(current))
                from flink_dl.pipeline.fitting import fit_feature_estimators

                fitted: list[Model] = list(fit_feature_estimators(current, group))
                jobs += 1
                index += len(group)
            elif isinstance(stage, Estimator):
                fitted = [stage.fit(current)]
                jobs += getattr(stage, "fit_jobs", 1)
                index += 1
            else:
                assert isinstance(stage, Model | Transformer)
                fitted = [_as_model(stage, index)]
                index += 1
            for model in fitted:
                models.append(model)
                if index < len(self.stages) or model is not fitted[-1]:
                    current = model.transform(current)
        from flink_dl.pipeline.reference import fit_reference

        reference = fit_reference(models, current, self.reference_bins)
        jobs += 2 if reference is not None else 0
        log.info("fitted a pipeline of %d stages in %d Flink job(s)", len(models), jobs)
        result = PipelineModel(models, input_schema=list(input_columns.values()),
                               reference=reference)
        result.fit_jobs = jobs
        return result


    def untrained(self, table: Table) -> PipelineModel:
        """A cold start: the pipeline as it serves before it has seen a row, for input
        shaped like ``table`` (only its columns are read; no Flink job runs). Each
        estimator gives its untrained model (``Estimator.untrained``): an
        ``OnlineStandardScaler`` scales by mean 0 and std 1 until its first window, an
        ``FTRLLogisticRegression`` has zero weights and predicts its ``prior``. Save it
        (``.save(pipeline_dir)``) and a job can serve and learn from the first labelled
        row; ``predict`` marks rows served by an untrained version in ``from_prior``.
        A stage that learns only from a batch fit is refused (``ConfigError``)."""
        require_table("Pipeline.untrained", table)
        input_columns = columns_of(table)
        models: list[Model] = []
        current = table
        for index, stage in enumerate(self.stages):
            model = stage.untrained(current) if isinstance(stage, Estimator) \
                else _as_model(stage, index)
            models.append(model)
            if index < len(self.stages) - 1:
                current = model.transform(current)  # planner only: the next stage's input
        log.info("a pipeline of %d stages starts untrained", len(models))
        return PipelineModel(models, input_schema=list(input_columns.values()),
                             untrained=True)


def _as_model(stage: Stage, index: int) -> Model:
    if not isinstance(stage, Model):
        raise ConfigError(f"Pipeline: stage {index} ({type(stage).__name__}) is a Transformer "
                          "that is not a Model; only Models can be saved in a PipelineModel")
    return stage


def _independent_group(stages: Sequence[Stage], start: int,
                       columns: dict[str, Column]) -> list[FeatureEstimator]:
    """``stages[start]`` and the feature estimators after it that read only columns of
    the current table that the group does not write, up to one that drops rows."""
    group: list[FeatureEstimator] = []
    written: set[str] = set()
    for stage in stages[start:]:
        if not isinstance(stage, FeatureEstimator):
            break
        if group and (any(c in written or c not in columns for c in stage.input_cols)):
            break
        group.append(stage)
        written |= set(stage.output_cols or stage.input_cols)
        if stage.handle_invalid == "skip":
            break
    return group


class PipelineModel(Model):
    """Fitted stages applied in order: ``transform(table)`` gives the input's columns with
    the stages' outputs (and prediction columns when the last stage is a model)."""

    kind = "PipelineModel"

    def __init__(self, stages: Sequence[Model],
                 input_schema: Sequence[Column] | None = None,
                 reference: Reference | None = None, *, untrained: bool = False) -> None:
        self.stages = list(stages)
        self.input_schema = list(input_schema or [])
        #: Histograms of the served features on the training table (``Pipeline.fit``).
        self.reference = reference
        #: A cold start whose model has learned nothing yet (``Pipeline.untrained``): its
        #: predictions are the model's prior. A published model version clears it.
        self.untrained = untrained
        self.fit_jobs = 0
        self.version: ModelVersion | None = None

    def get_params(self) -> dict[str, Any]:
        return {"stages": [type(s).__name__ for s in self.stages]}

    def model_data(self) -> dict[str, Any]:
        return {"stages": [s.to_json() for s in self.stages]}

    def transform(self, table: Table) -> Table:
        require_table("PipelineModel.transform", table)
        table = self.conform(table)
        for stage in self.stages:
            table = stage.transform(table)
        return table

    def check_schema(self, columns: dict[str, Column]) -> dict[str, str]:
        """``FeatureTypeError`` when a column the pipeline was fitted on has a type of
        another family now (STRING where DOUBLE was fitted; a CHAR/VARCHAR length, a wider
        or narrower integer or floating type, a DECIMAL precision is the same family),
        naming the column, both types and the stage that reads it. Returns the casts that
        give narrower columns their fitted type: column -> fitted type."""
        from flink_dl.pipeline.sql import same_family, widens_to

        casts = {}
        for saved in self.input_schema:
            now = columns.get(saved.name)
            if now is None or now.type == saved.type:
                continue
            if not same_family(saved, now):
                reader = next((type(s).__name__ for s in self.stages
                               if saved.name in (getattr(s, "input_cols", None) or [])),
                              "the pipeline")
                raise FeatureTypeError(
                    f"PipelineModel: column {saved.name!r} (read by {reader}) was "
                    f"{saved.type} when the pipeline was fitted and is {now.type} in this "
                    "input; cast it back or fit the pipeline again")
            if widens_to(now, saved):
                casts[saved.name] = saved.type
        return casts

    def conform(self, table: Table) -> Table:
        """``table`` checked (``check_schema``), with columns narrower than when the
        pipeline was fitted cast to their fitted types (every value is kept, and the
        stages' SQL reads the types it was fitted on)."""
        from flink_dl.pipeline.sql import quote, select

        columns = columns_of(table)
        casts = self.check_schema(columns)
        if not casts:
            return table
        log.info("PipelineModel: casting %s to the types the pipeline was fitted on", casts)
        return select(table, [f"CAST({quote(n)} AS {casts[n]}) AS {quote(n)}" if n in casts
                              else quote(n) for n in columns])

    # ------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike[str], *, keep_versions: int | None = None,
             keep_for_s: float = 0.0) -> ModelVersion:
        """Publish the pipeline as the next version of the ``ModelStore`` at ``path``;
        ``keep_versions``: then remove all but the newest that many, sparing versions
        younger than ``keep_for_s`` seconds (``None``: keep every version)."""

        def write(directory: Path) -> None:
            stages = []
            for index, stage in enumerate(self.stages):
                entry = stage.to_json()
                stage_dir = directory / f"stage-{index:02d}"
                stage_dir.mkdir()
                stage.save_files(stage_dir)
                if not any(stage_dir.iterdir()):
                    stage_dir.rmdir()
                else:
                    entry["files"] = stage_dir.name
                stages.append(entry)
            document = {"format": FORMAT_VERSION,
                        "input_schema": [{"name": c.name, "type": c.type, "root": c.root}
                                         for c in self.input_schema],
                        "stages": stages}
            if self.reference is not None:
                document["reference"] = self.reference.to_json()
            if self.untrained:
                document["untrained"] = True
            (directory / PIPELINE_FILE).write_text(json.dumps(document, indent=2))

        store = ModelStore(path, keep_versions, keep_for_s=keep_for_s)
        self.version = store.publish(write, framework="pipeline")
        return self.version

    @classmethod
    def load(cls, path: str | os.PathLike[str], version: int | None = None) -> PipelineModel:
        """The pipeline saved at ``path`` (a ``ModelStore`` directory: its newest version,
        or ``version``; or one version's directory), checksums verified."""
        opened = _open_version(Path(path), version)
        return cls.from_version(opened)

    @classmethod
    def from_version(cls, opened: ModelVersion) -> PipelineModel:
        document = json.loads(opened.file(PIPELINE_FILE).read_text())
        if document.get("format") != FORMAT_VERSION:
            raise ConfigError(f"{opened.path}: pipeline format {document.get('format')!r} is "
                              f"not one this flink-dl reads ({FORMAT_VERSION})")
        stages = []
        for entry in document["stages"]:
            stage_type = stage_class(entry["kind"])
            assert issubclass(stage_type, Model)
            directory = Path(opened.path) / entry.get("files", "-")
            stages.append(stage_type.from_json(entry["params"], entry["data"], directory))
        schema = [Column(c["name"], c["type"], c["root"]) for c in document["input_schema"]]
        from flink_dl.pipeline.reference import reference_of

        model = cls(stages, input_schema=schema, reference=reference_of(document, opened),
                    untrained=bool(document.get("untrained", False)))
        model.version = opened
        return model


def _open_version(path: Path, version: int | None) -> ModelVersion:
    from flink_dl.models.store import MANIFEST

    if (path / MANIFEST).is_file():  # one version's directory
        if version is not None:
            raise ConfigError(f"{path} is one pipeline version; pass its store directory "
                              "to choose another version")
        return ModelStore(path.parent).open(int(path.name[1:]))
    if not (path / PIPELINE_FILE).exists() and ModelStore(path).latest_number() is None:
        raise NotFoundError(f"no saved pipeline at {path}")
    return ModelStore(path).open(version)


def saved_reference(path: str | os.PathLike[str]) -> Reference | None:
    """The reference saved with the pipeline at ``path`` (its newest version; or one
    version's directory), or ``None`` when it has none."""
    from flink_dl.pipeline.reference import reference_of

    opened = _open_version(Path(path), None)
    document = json.loads(opened.file(PIPELINE_FILE).read_text())
    return reference_of(document, opened)


@contextlib.contextmanager
def pipeline_lock(pipeline_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the publishing lock of ``pipeline_dir`` (one read-modify-publish at a time:
    an online model and an online scaler may both publish new versions)."""
    import fcntl

    root = Path(pipeline_dir)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(root / PUBLISH_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def publish_model(pipeline_dir: str | os.PathLike[str],
                  model: ModelVersion | str | os.PathLike[str], *,
                  keep_versions: int | None = ONLINE_KEEP_VERSIONS,
                  keep_for_s: float = ONLINE_KEEP_FOR_S) -> ModelVersion:
    """Publish a new version of the pipelines at ``pipeline_dir``: the newest version's
    stages, with the model stage's files taken from ``model`` (a version a training job
    published, e.g. what ``ctx.maybe_save_model`` returned on the chief). The structure
    stays the same, so a job serving the directory (``flink_dl.pipeline.predict``) swaps
    the new model in.

    Older pipeline versions are removed: all but the newest ``keep_versions``, sparing
    those younger than ``keep_for_s`` seconds (``keep_versions=None`` keeps every one), so
    a long online run's disk use stays flat."""

    with pipeline_lock(pipeline_dir):
        return _publish_model(pipeline_dir, model, keep_versions, keep_for_s)


def _publish_model(pipeline_dir: str | os.PathLike[str],
                   model: ModelVersion | str | os.PathLike[str],
                   keep_versions: int | None, keep_for_s: float) -> ModelVersion:
    from flink_dl.pipeline.learners import LearnerModel

    current = PipelineModel.load(pipeline_dir)
    learner = current.stages[-1] if current.stages else None
    if not isinstance(learner, LearnerModel):
        raise ConfigError(f"publish_model: the newest pipeline in {pipeline_dir} has no model "
                          "stage to replace")
    directory = Path(model.path if isinstance(model, ModelVersion) else model)
    source = directory / Path(learner.model_path).name
    if not source.exists():
        raise NotFoundError(f"publish_model: {directory} has no {source.name} (the file "
                            "the pipeline's model stage serves)")
    replaced = type(learner).from_json(learner.get_params(), {"model_file": source.name},
                                       directory)
    replaced.postprocess, replaced.options = learner.postprocess, learner.options
    return PipelineModel([*current.stages[:-1], replaced], current.input_schema,
                         current.reference).save(pipeline_dir, keep_versions=keep_versions,
                                                 keep_for_s=keep_for_s)
