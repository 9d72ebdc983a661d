"""The pipeline interfaces: ``Stage`` → ``Transformer`` / ``Estimator`` → ``Model``.

Shaped like Flink ML's ``api.py`` and scikit-learn: an ``Estimator`` is fitted on a bounded
Table and returns a ``Model``; a ``Transformer`` (every ``Model`` is one) maps a Table to a
Table. Every stage has JSON parameters (``get_params``); a model adds the data it fitted
(``model_data``). A registry maps each stage's ``kind`` to its class, so a saved pipeline is
rebuilt from JSON alone, without unpickling code.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pyflink.table import Table

from flink_dl.errors import ConfigError, UnsupportedOperationError

#: kind -> stage class, filled by ``register`` and by ``stage_class`` on first use.
_REGISTRY: dict[str, type[Stage]] = {}

#: Where each built-in stage lives: kind -> "module:class". ``stage_class`` imports the
#: module when a saved pipeline names the kind, so a process that imported none of them
#: (a serving process, a fresh ``PipelineModel.load``) loads every built-in stage.
BUILTIN_STAGES: dict[str, str] = {
    **{kind: f"flink_dl.pipeline.stages.scalers:{kind}" for kind in (
        "StandardScaler", "StandardScalerModel", "MinMaxScaler", "MinMaxScalerModel")},
    **{kind: f"flink_dl.pipeline.stages.categorical:{kind}" for kind in (
        "StringIndexer", "StringIndexerModel", "OneHotEncoder", "OneHotEncoderModel")},
    **{kind: f"flink_dl.pipeline.stages.buckets:{kind}" for kind in (
        "Bucketizer", "QuantileDiscretizer")},
    **{kind: f"flink_dl.pipeline.stages.imputer:{kind}" for kind in ("Imputer", "ImputerModel")},
    "SQLTransform": "flink_dl.pipeline.stages.sql_transform:SQLTransform",
    **{kind: f"flink_dl.pytorch.learner:{kind}" for kind in ("TorchEstimator", "TorchModel")},
    **{kind: f"flink_dl.tensorflow.learner:{kind}" for kind in ("TFEstimator", "TFModel")},
    "OnlineStandardScaler": "flink_dl.online.scaler:OnlineStandardScaler",
}

HANDLE_INVALID = ("error", "skip", "keep")


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make ``cls`` loadable from saved JSON under ``cls.kind`` (a stage
    outside flink-dl loads in processes that imported its module)."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ConfigError(f"pipeline stage kind {cls.kind!r} is registered twice")
    _REGISTRY[cls.kind] = cls
    return cls


def stage_class(kind: str) -> type[Stage]:
    """The stage class saved under ``kind``: a registered one, or a built-in one imported
    from ``BUILTIN_STAGES`` (``ConfigError`` naming unknown kinds)."""
    if kind not in _REGISTRY and kind in BUILTIN_STAGES:
        module, _, name = BUILTIN_STAGES[kind].partition(":")
        cls = getattr(importlib.import_module(module), name)  # its @register runs
        if getattr(cls, "kind", None) != kind:
            raise ConfigError(f"pipeline stage kind {kind!r}: {BUILTIN_STAGES[kind]} is a "
                              f"stage of kind {getattr(cls, 'kind', None)!r}")
        _REGISTRY.setdefault(kind, cls)
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ConfigError(f"unknown pipeline stage kind {kind!r}; known: "
                          f"{sorted(set(_REGISTRY) | set(BUILTIN_STAGES))} (a stage defined "
                          "outside flink-dl loads once its module is imported)") from None


class Stage(ABC):
    """A pipeline stage with JSON parameters."""

    #: The name a saved pipeline knows this stage by.
    kind: ClassVar[str]

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """The stage's parameters as JSON values (what the constructor takes)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class Transformer(Stage):
    """Maps a Table to a Table."""

    @abstractmethod
    def transform(self, table: Table) -> Table:
        """The input with this stage applied (checked against the input's schema)."""


class Model(Transformer):
    """A fitted ``Transformer``: parameters plus the data fitting produced."""

    @abstractmethod
    def model_data(self) -> dict[str, Any]:
        """What fitting computed, as JSON values (means, vocabularies, splits, ...)."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.get_params(), "data": self.model_data()}

    @classmethod
    def from_json(cls, params: Mapping[str, Any], data: Mapping[str, Any],
                  directory: Path) -> Model:
        """Rebuild a saved model; ``directory`` holds its files, if it saved any."""
        raise UnsupportedOperationError(f"{cls.__name__} cannot be loaded from JSON")

    def save_files(self, directory: Path) -> None:
        """Write this model's files (e.g. trained weights) into ``directory``."""


class Estimator(Stage):
    """Fits a ``Model`` on a bounded Table."""

    @abstractmethod
    def fit(self, table: Table) -> Model:
        """Compute the statistics (or train) on ``table`` with Flink; the fitted model."""

    def untrained(self, table: Table) -> Model:
        """The model this estimator serves before it has learned anything (a cold start,
        ``Pipeline.untrained``), for input shaped like ``table``; no Flink job runs.

        Only estimators that keep learning from a stream can start untrained; the others
        raise ``ConfigError`` naming themselves."""
        raise ConfigError(f"{type(self).__name__} cannot start untrained: it learns only from "
                          "a batch fit (Pipeline.fit); a cold start needs stages that keep "
                          "learning from the stream (OnlineStandardScaler, "
                          "FTRLLogisticRegression, a TorchEstimator with a factory)")


def require_table(where: str, table: object) -> None:
    """``ConfigError`` unless ``table`` is a PyFlink Table (a DataStream is converted with
    ``t_env.from_data_stream(stream)`` first)."""
    if not isinstance(table, Table):
        raise ConfigError(f"{where}: the input must be a pyflink Table, got "
                          f"{type(table).__name__}; convert a DataStream with "
                          "t_env.from_data_stream(stream)")


def check_handle_invalid(stage: str, value: str) -> str:
    if value not in HANDLE_INVALID:
        raise ConfigError(f"{stage}: handle_invalid must be one of {list(HANDLE_INVALID)}, "
                          f"got {value!r}")
    return value


def check_columns(stage: str, name: str, value: Sequence[str] | None,
                  *, required: bool = True) -> list[str] | None:
    """A list of column names (``ConfigError`` naming the stage and argument otherwise)."""
    if value is None and not required:
        return None
    if isinstance(value, str) or not value or not all(isinstance(c, str) and c
                                                      for c in value):
        raise ConfigError(f"{stage}: {name} must be a non-empty list of column names, "
                          f"got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{stage}: {name} names a column twice: {list(value)}")
    return list(value)
