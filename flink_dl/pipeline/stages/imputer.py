"""``Imputer``: missing values (NULL, NaN, or ``missing_value``) replaced by a fitted value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flink_dl.errors import ConfigError
from flink_dl.pipeline.api import register
from flink_dl.pipeline.sql import (
    STRING_ROOTS,
    Column,
    as_double,
    double_literal,
    is_missing,
    quote,
    require_columns,
)
from flink_dl.pipeline.stages.base import (
    FeatureEstimator,
    FeatureModel,
    one_value,
)
from flink_dl.pipeline.statistics import StatQuery, StatRows, grouped, quantiles, scalar

STRATEGIES = ("mean", "median", "most_frequent")


def _missing(column: Column, missing_value: float | None) -> str:
    condition = is_missing(column)
    if missing_value is not None and column.root not in STRING_ROOTS:
        condition = f"({condition} OR {as_double(column.name)} = " \
                    f"{double_literal(missing_value)})"
    return condition


class _ImputerParams:
    def _set_imputer(self, strategy: str, missing_value: float | None) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"Imputer: strategy must be one of {list(STRATEGIES)}, got "
                              f"{strategy!r}")
        self.strategy = strategy
        self.missing_value = None if missing_value is None else float(missing_value)

    def check_input(self, columns: Mapping[str, Column]) -> None:
        require_columns(type(self).__name__, dict(columns),
                        self.input_cols,  # type: ignore[attr-defined]
                        "numeric_or_string" if self.strategy == "most_frequent" else "numeric")


@register
class ImputerModel(_ImputerParams, FeatureModel):
    """Missing values of each column replaced by ``model.surrogates[i]``; numeric columns
    come out as DOUBLE, STRING columns (``most_frequent``) as STRING."""

    kind = "ImputerModel"

    def __init__(self, input_cols: Sequence[str], surrogates: Sequence[float | str], *,
                 output_cols: Sequence[str] | None = None, strategy: str = "mean",
                 missing_value: float | None = None, handle_invalid: str = "keep") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self._set_imputer(strategy, missing_value)
        if len(surrogates) != len(self.input_cols):
            raise ConfigError(f"ImputerModel: {len(surrogates)} surrogates for "
                              f"{len(self.input_cols)} input_cols")
        self.surrogates = list(surrogates)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "strategy": self.strategy,
                "missing_value": self.missing_value}

    def model_data(self) -> dict[str, Any]:
        return {"surrogates": self.surrogates}

    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        surrogate = self.surrogates[index]
        if column.root in STRING_ROOTS:
            value, fill = quote(column.name), self.text(str(surrogate))
        else:
            value, fill = as_double(column.name), self.num(float(surrogate))
        expr = f"CASE WHEN {_missing(column, self.missing_value)} THEN {fill} ELSE {value} END"
        return [(self.output_name(index), expr)], None


@register
class Imputer(_ImputerParams, FeatureEstimator):
    """Fits, per column, the mean, median (exact, Flink's ``PERCENTILE``) or most frequent
    value of the values that are not missing (ties: the smallest). Missing means NULL, NaN,
    or equal to ``missing_value`` (Flink ML's ``missingValue``)."""

    kind = "Imputer"

    def __init__(self, input_cols: Sequence[str], output_cols: Sequence[str] | None = None, *,
                 strategy: str = "mean", missing_value: float | None = None) -> None:
        self._set_columns(input_cols, output_cols, "keep")
        self._set_imputer(strategy, missing_value)

    def get_params(self) -> dict[str, Any]:
        return {"input_cols": list(self.input_cols),
                "output_cols": None if self.output_cols is None else list(self.output_cols),
                "strategy": self.strategy, "missing_value": self.missing_value}

    def statistics(self, columns: Mapping[str, Column]) -> list[StatQuery]:
        out = []
        self._text_columns = {n for n in self.input_cols if columns[n].root in STRING_ROOTS}
        for name in self.input_cols:
            column = columns[name]
            keep = f"NOT {_missing(column, self.missing_value)}"
            if self.strategy == "mean":
                out.append(scalar(name, f"AVG({as_double(name)}) FILTER (WHERE {keep})"))
            elif self.strategy == "median":
                out.append(quantiles(name, as_double(name), [0.5], keep))
            else:
                out.append(grouped(name, quote(name), "COUNT(*)", keep))
        return out

    def model_from(self, stats: Mapping[str, StatRows]) -> FeatureModel:
        surrogates: list[float | str] = []
        for name in self.input_cols:
            if self.strategy == "mean":
                value: float | str | None = one_value(self.stage_name, stats, name)
            elif self.strategy == "median":
                rows = stats.get(name) or []
                value = rows[0][1] if rows else None
            else:
                value = _most_frequent(stats.get(name) or [])
                if value is not None and name not in self._text_columns:
                    value = float(value)
            if value is None:
                raise ConfigError(f"Imputer: column {name!r} has no value that is not "
                                  "missing to fit on")
            surrogates.append(value)
        return ImputerModel(self.input_cols, surrogates, output_cols=self.output_cols,
                            strategy=self.strategy, missing_value=self.missing_value)


def _most_frequent(rows: StatRows) -> str | None:
    if not rows:
        return None
    best = max(count or 0 for _, count in rows)
    tied = [key for key, count in rows if count == best and key is not None]

    def order(key: str) -> tuple[int, float | str]:
        try:
            return 0, float(key)
        except ValueError:
            return 1, key

    return min(tied, key=order)
