"""``StandardScaler`` and ``MinMaxScaler``: numeric columns rescaled with fitted statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flink_dl.errors import ConfigError
from flink_dl.pipeline.api import register
from flink_dl.pipeline.sql import (
    Column,
    as_double,
    double_literal,
    quote,
    raise_invalid,
)
from flink_dl.pipeline.stages.base import (
    FeatureEstimator,
    FeatureModel,
    column_aggregates,
    column_values,
    per_column,
)
from flink_dl.pipeline.statistics import StatQuery, StatRows


def null_policy(model: FeatureModel, column: Column, expr: str) -> tuple[str, str | None]:
    """``expr`` with the stage's ``handle_invalid`` applied to a NULL input: ``error``
    fails the job naming the column, ``skip`` drops the row, ``keep`` yields NULL."""
    name = quote(column.name)
    if model.handle_invalid == "error":
        return (f"CASE WHEN {name} IS NULL THEN "
                f"{raise_invalid(model.stage_name, column.name, 'is NULL', name)} "
                f"ELSE {expr} END"), None
    if model.handle_invalid == "skip":
        return expr, f"{name} IS NOT NULL"
    return expr, None


def _finite_list(stage: str, name: str, values: Sequence[Any], size: int) -> list[float]:
    per_column(stage, name, values, size)
    return [float(v) for v in values]


@register
class StandardScalerModel(FeatureModel):
    """``(x - mean) / std`` per column (``model.mean``, ``model.std``), as DOUBLE. A column
    whose std is 0 is only centred."""

    kind = "StandardScalerModel"

    def __init__(self, input_cols: Sequence[str], mean: Sequence[float], std: Sequence[float],
                 *, output_cols: Sequence[str] | None = None, with_mean: bool = True,
                 with_std: bool = True, handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.mean = _finite_list(self.stage_name, "mean", mean, len(self.input_cols))
        self.std = _finite_list(self.stage_name, "std", std, len(self.input_cols))
        self.with_mean, self.with_std = bool(with_mean), bool(with_std)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "with_mean": self.with_mean,
                "with_std": self.with_std}

    def model_data(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        expr = as_double(column.name)
        if self.with_mean:
            expr = f"({expr} - {self.num(self.mean[index])})"
        if self.with_std and self.std[index] != 0.0:
            expr = f"{expr} / {self.num(self.std[index])}"
        expr, condition = null_policy(self, column, expr)
        return [(self.output_name(index), expr)], condition


@register
class StandardScaler(FeatureEstimator):
    """Fits each column's mean and population standard deviation (as scikit-learn; NULLs
    are not counted). Flink ML's ``withMean`` defaults to False; here, as in scikit-learn,
    both default to True."""

    kind = "StandardScaler"

    def __init__(self, input_cols: Sequence[str], output_cols: Sequence[str] | None = None, *,
                 with_mean: bool = True, with_std: bool = True,
                 handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.with_mean, self.with_std = bool(with_mean), bool(with_std)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "with_mean": self.with_mean,
                "with_std": self.with_std}

    def statistics(self, columns: Mapping[str, Column]) -> list[StatQuery]:
        return column_aggregates(columns, self.input_cols,
                                 {"mean": "AVG", "std": "STDDEV_POP"})

    def model_from(self, stats: Mapping[str, StatRows]) -> FeatureModel:
        values = column_values(self.stage_name, stats, self.input_cols, ["mean", "std"])
        mean = [float(m or 0.0) for m in values["mean"]]
        std = [float(s or 0.0) for s in values["std"]]
        return StandardScalerModel(self.input_cols, mean, std, output_cols=self.output_cols,
                                   with_mean=self.with_mean, with_std=self.with_std,
                                   handle_invalid=self.handle_invalid)


@register
class MinMaxScalerModel(FeatureModel):
    """``(x - data_min) / (data_max - data_min) * (max - min) + min`` per column, as DOUBLE
    (``model.data_min``, ``model.data_max``); a constant column maps to ``(min + max) / 2``
    (as Flink ML). Values outside the fitted range map outside ``[min, max]``."""

    kind = "MinMaxScalerModel"

    def __init__(self, input_cols: Sequence[str], data_min: Sequence[float],
                 data_max: Sequence[float], *, output_cols: Sequence[str] | None = None,
                 min: float = 0.0, max: float = 1.0,  # Flink ML's names
                 handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.data_min = _finite_list(self.stage_name, "data_min", data_min,
                                     len(self.input_cols))
        self.data_max = _finite_list(self.stage_name, "data_max", data_max,
                                     len(self.input_cols))
        self.min, self.max = _range(self.stage_name, min, max)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "min": self.min, "max": self.max}

    def model_data(self) -> dict[str, Any]:
        return {"data_min": self.data_min, "data_max": self.data_max}

    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        lo, hi = self.data_min[index], self.data_max[index]
        if hi == lo:
            expr = f"CAST({double_literal((self.min + self.max) / 2)} AS DOUBLE)"
            expr = f"CASE WHEN {quote(column.name)} IS NULL THEN CAST(NULL AS DOUBLE) " \
                   f"ELSE {expr} END"
        else:
            expr = (f"({as_double(column.name)} - {self.num(lo)}) / "
                    f"{self.num(hi - lo)} * {double_literal(self.max - self.min)} + "
                    f"{double_literal(self.min)}")
        expr, condition = null_policy(self, column, expr)
        return [(self.output_name(index), expr)], condition


def _range(stage: str, low: float, high: float) -> tuple[float, float]:
    low, high = float(low), float(high)
    if not low < high:
        raise ConfigError(f"{stage}: min must be below max, got min={low}, max={high}")
    return low, high


@register
class MinMaxScaler(FeatureEstimator):
    """Fits each column's minimum and maximum; rescales to ``[min, max]`` (default [0, 1])."""

    kind = "MinMaxScaler"

    def __init__(self, input_cols: Sequence[str], output_cols: Sequence[str] | None = None, *,
                 min: float = 0.0, max: float = 1.0,  # Flink ML's names
                 handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.min, self.max = _range(self.stage_name, min, max)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "min": self.min, "max": self.max}

    def statistics(self, columns: Mapping[str, Column]) -> list[StatQuery]:
        return column_aggregates(columns, self.input_cols, {"min": "MIN", "max": "MAX"})

    def model_from(self, stats: Mapping[str, StatRows]) -> FeatureModel:
        values = column_values(self.stage_name, stats, self.input_cols, ["min", "max"])
        lows = [float(v or 0.0) for v in values["min"]]
        highs = [float(v or 0.0) for v in values["max"]]
        return MinMaxScalerModel(self.input_cols, lows, highs, output_cols=self.output_cols,
                                 min=self.min, max=self.max,
                                 handle_invalid=self.handle_invalid)
