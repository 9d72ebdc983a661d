"""``Bucketizer`` (given splits) and ``QuantileDiscretizer`` (splits fitted at quantiles).

Bucket ``i`` holds ``splits[i] <= x < splits[i + 1]``; the last bucket also holds
``x == splits[-1]`` (as Flink ML). Splits may start at ``-inf`` and end at ``inf``. An
invalid value is NULL, NaN, or outside ``[splits[0], splits[-1]]``:
``handle_invalid="keep"`` puts it in an extra bucket ``len(splits) - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from flink_dl.errors import ConfigError
from flink_dl.pipeline.api import register
from flink_dl.pipeline.sql import (
    Column,
    as_double,
    is_missing,
    quote,
    raise_invalid,
)
from flink_dl.pipeline.stages.base import (
    FeatureEstimator,
    FeatureModel,
    per_column,
)
from flink_dl.pipeline.statistics import StatQuery, StatRows, quantiles


def _check_splits(stage: str, input_cols: list[str],
                  splits_array: Sequence[Sequence[float]]) -> list[list[float]]:
    per_column(stage, "splits_array", splits_array, len(input_cols))
    out = []
    for name, splits in zip(input_cols, splits_array, strict=True):
        values = [float(s) for s in splits]
        if len(values) < 2:
            raise ConfigError(f"{stage}: column {name!r} needs at least 2 splits, got {values}")
        if any(math.isnan(v) for v in values) or any(b <= a for a, b in pairwise(values)):
            raise ConfigError(f"{stage}: the splits of column {name!r} must increase "
                              f"strictly, got {values}")
        out.append(values)
    return out


@register
class Bucketizer(FeatureModel):
    """Maps each column to the index (INT) of its bucket in ``splits_array[i]`` (Flink ML's
    ``splitsArray``). Needs no fitting: it is a pipeline stage and its own model."""

    kind = "Bucketizer"

    def __init__(self, input_cols: Sequence[str], splits_array: Sequence[Sequence[float]],
                 output_cols: Sequence[str] | None = None, *,
                 handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.splits_array = _check_splits(self.stage_name, self.input_cols, splits_array)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "splits_array": self.splits_array}

    def model_data(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, params: Mapping[str, Any], data: Mapping[str, Any], directory: Any
                  ) -> FeatureModel:
        return cls(**params)

    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        splits = self.splits_array[index]
        x = as_double(column.name)
        valid = [f"NOT {is_missing(column)}"]
        if not math.isinf(splits[0]):
            valid.append(f"{x} >= {self.num(splits[0])}")
        if not math.isinf(splits[-1]):
            valid.append(f"{x} <= {self.num(splits[-1])}")
        whens = " ".join(f"WHEN {x} < {self.num(s)} THEN {i}"
                         for i, s in enumerate(splits[1:-1]))
        last = len(splits) - 2
        if self.handle_invalid == "keep":
            invalid = str(len(splits) - 1)
        elif self.handle_invalid == "error":
            invalid = raise_invalid(self.stage_name, column.name,
                                    "is NULL, NaN or outside the splits",
                                    quote(column.name))
        else:
            invalid = "-1"
        expr = (f"CAST(CASE WHEN NOT ({' AND '.join(valid)}) THEN {invalid} {whens} "
                f"ELSE {last} END AS INT)")
        condition = " AND ".join(valid) if self.handle_invalid == "skip" else None
        return [(self.output_name(index), expr)], condition


@register
class QuantileDiscretizer(FeatureEstimator):
    """Fits ``num_buckets`` buckets per column at exact quantiles (Flink's ``PERCENTILE``;
    Flink ML's ``numBuckets``); repeated quantiles merge, so a skewed column may get fewer
    buckets. The outer splits are ``-inf`` and ``inf``."""

    kind = "QuantileDiscretizer"

    def __init__(self, input_cols: Sequence[str], output_cols: Sequence[str] | None = None, *,
                 num_buckets: int = 2, handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) \
                or num_buckets < 2:
            raise ConfigError(f"QuantileDiscretizer: num_buckets must be an integer >= 2, got "
                              f"{num_buckets!r}")
        self.num_buckets = num_buckets

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "num_buckets": self.num_buckets}

    def statistics(self, columns: Mapping[str, Column]) -> list[StatQuery]:
        probabilities = [i / self.num_buckets for i in range(1, self.num_buckets)]
        return [quantiles(name, as_double(name), probabilities,
                          f"NOT {is_missing(columns[name])}") for name in self.input_cols]

    def model_from(self, stats: Mapping[str, StatRows]) -> FeatureModel:
        splits_array = []
        for name in self.input_cols:
            rows = sorted(((int(k), v) for k, v in stats.get(name) or [] if k is not None))
            if not rows:
                raise ConfigError(f"QuantileDiscretizer: column {name!r} has no value that "
                                  "is not NULL or NaN to fit on")
            inner = sorted({float(v) for _, v in rows if v is not None})
            splits_array.append([-math.inf, *inner, math.inf])
        return Bucketizer(self.input_cols, splits_array, self.output_cols,
                          handle_invalid=self.handle_invalid)
