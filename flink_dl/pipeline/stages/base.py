"""What the built-in feature stages share: columns in and out, invalid values, statistics.

A fitted feature stage is a ``FeatureModel``: for each input column it gives SQL
expressions for its output columns (and, for ``handle_invalid="skip"``, a condition a row
must meet). ``transform`` turns them into one ``SELECT`` that Flink compiles into the JVM,
so a bounded and an unbounded Table get bit-identical features. A ``FeatureEstimator``
says which aggregates it needs (``statistics``) and builds its model from their values;
``flink_dl.pipeline.fitting`` runs the aggregates of several stages in one Flink job.

May import: ``flink_dl.pipeline`` api, sql, statistics and fitting (which never import the
stages).
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyflink.table import Table

from flink_dl.errors import ConfigError
from flink_dl.pipeline.api import (
    Estimator,
    Model,
    Transformer,
    check_columns,
    check_handle_invalid,
)
from flink_dl.pipeline.fitting import fit_feature_estimators
from flink_dl.pipeline.sql import (
    Column,
    columns_of,
    double_literal,
    quote,
    require_columns,
    select,
    string_literal,
)
from flink_dl.pipeline.statistics import StatQuery, StatRows, scalar


class ColumnsParams:
    """``input_cols``, ``output_cols`` (default: replace the inputs in place) and
    ``handle_invalid``, checked as Flink ML checks ``inputCols``/``outputCols``."""

    family = "numeric"

    def _set_columns(self, input_cols: Sequence[str], output_cols: Sequence[str] | None,
                     handle_invalid: str) -> None:
        name = type(self).__name__
        self.input_cols = check_columns(name, "input_cols", input_cols)
        self.output_cols = check_columns(name, "output_cols", output_cols, required=False)
        if self.output_cols is not None and len(self.output_cols) != len(self.input_cols):
            raise ConfigError(f"{name}: output_cols has {len(self.output_cols)} names for "
                              f"{len(self.input_cols)} input_cols")
        self.handle_invalid = check_handle_invalid(name, handle_invalid)

    def _column_params(self) -> dict[str, Any]:
        return {"input_cols": list(self.input_cols),
                "output_cols": None if self.output_cols is None else list(self.output_cols),
                "handle_invalid": self.handle_invalid}

    def output_name(self, index: int) -> str:
        return (self.output_cols or self.input_cols)[index]

    @property
    def stage_name(self) -> str:
        return type(self).__name__

    def check_input(self, columns: Mapping[str, Column]) -> None:
        require_columns(self.stage_name, dict(columns), self.input_cols, self.family)


class ConstantRecorder:
    """Collects the fitted values of feature stages as fields of one ROW column instead of
    literals: the SQL then reads them per row, and a new version's values can replace
    them in a running job (``flink_dl.pipeline.serving``)."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.types: list[str] = []
        self.values: list[float | str] = []

    def add(self, sql_type: str, value: float | str) -> str:
        self.types.append(sql_type)
        self.values.append(value)
        return f"{quote(self.column)}.{quote(f'c{len(self.values) - 1}')}"


class FeatureModel(ColumnsParams, Model):
    """A fitted feature stage, applied as one SQL ``SELECT``. Fitted values enter its SQL
    through ``num``/``text``: literals, or fields of a parameter column while a
    ``ConstantRecorder`` is set (``recording``)."""

    recorder: ConstantRecorder | None = None

    def num(self, value: float) -> str:
        """A fitted DOUBLE in the SQL."""
        if self.recorder is not None:
            return self.recorder.add("DOUBLE", float(value))
        return double_literal(value)

    def text(self, value: str) -> str:
        """A fitted STRING in the SQL."""
        if self.recorder is not None:
            return self.recorder.add("STRING", str(value))
        return string_literal(value)

    @contextlib.contextmanager
    def recording(self, recorder: ConstantRecorder) -> Iterator[None]:
        """Within the block, fitted values become fields of ``recorder``'s column."""
        self.recorder = recorder
        try:
            yield
        finally:
            self.recorder = None

    def sql_texts(self, columns: Mapping[str, Column]) -> list[str]:
        """The SQL this stage generates for ``columns`` (its structure, when recording)."""
        texts = []
        for index, name in enumerate(self.input_cols):
            exprs, condition = self.column_sql(index, columns[name])
            texts += [f"{out}={sql}" for out, sql in exprs] + [f"WHERE {condition}"]
        return texts

    @abstractmethod
    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        """For input column ``index``: [(output name, SQL expression)], and a condition
        rows must meet (``handle_invalid="skip"``) or ``None``."""

    def replaces_input(self) -> bool:
        """Whether the outputs take the input column's place (no ``output_cols``)."""
        return self.output_cols is None

    def prepare(self, table: Table, columns: Mapping[str, Column]) -> Table:
        """The input with the helper columns ``column_sql`` reads (none by default); they
        are not in the output."""
        return table

    def transform(self, table: Table) -> Table:
        columns = columns_of(table)
        self.check_input(columns)
        table = self.prepare(table, columns)
        outputs: dict[str, list[tuple[str, str]]] = {}
        conditions = []
        for index, name in enumerate(self.input_cols):
            exprs, condition = self.column_sql(index, columns[name])
            outputs[name] = exprs
            if condition:
                conditions.append(condition)
        projections = _projections(self.stage_name, list(columns), outputs,
                                   self.replaces_input())
        return select(table, projections, " AND ".join(conditions) or None)

    def get_params(self) -> dict[str, Any]:
        return self._column_params()

    @classmethod
    def from_json(cls, params: Mapping[str, Any], data: Mapping[str, Any],
                  directory: Path) -> Model:
        return cls(**params, **data)


def _projections(stage: str, names: list[str], outputs: dict[str, list[tuple[str, str]]],
                 in_place: bool) -> list[str]:
    """The SELECT list: inputs in order, each replaced by its outputs (in place) or kept
    with the outputs appended; a clash with a column that stays fails naming both."""
    kept = [n for n in names if not (in_place and n in outputs)]
    produced = [out for exprs in outputs.values() for out, _ in exprs]
    clash = sorted(set(produced) & set(kept))
    dupes = sorted({n for n in produced if produced.count(n) > 1})
    if clash or dupes:
        raise ConfigError(f"{stage}: output column(s) {clash or dupes} "
                          f"{'already exist in the input' if clash else 'are produced twice'}; "
                          "choose other output_cols")
    projections = []
    for name in names:
        if in_place and name in outputs:
            projections += [f"{sql} AS {quote(out)}" for out, sql in outputs[name]]
        else:
            projections.append(quote(name))
    if not in_place:
        projections += [f"{sql} AS {quote(out)}" for exprs in outputs.values()
                        for out, sql in exprs]
    return projections


class FeatureEstimator(ColumnsParams, Estimator):
    """A feature stage fitted from aggregates that Flink computes."""

    @abstractmethod
    def statistics(self, columns: Mapping[str, Column]) -> list[StatQuery]:
        """The aggregates to compute over ``__THIS__`` (the input at this stage)."""

    @abstractmethod
    def model_from(self, stats: Mapping[str, StatRows]) -> FeatureModel:
        """The fitted model from the aggregates' rows (by ``StatQuery.name``)."""

    def get_params(self) -> dict[str, Any]:
        return self._column_params()

    def fit(self, table: Table) -> Model:
        (model,) = fit_feature_estimators(table, [self])
        return model


class FeatureTransformer(ColumnsParams, Transformer):
    """Marker for feature stages that need no fitting (they are their own model)."""


def column_aggregates(columns: Mapping[str, Column], input_cols: Sequence[str],
                      aggregates: Mapping[str, str]) -> list[StatQuery]:
    """For each input column, each ``name -> AGGREGATE`` over its values as DOUBLE,
    missing values left out: statistics named ``"<name>:<column>"``."""
    from flink_dl.pipeline.sql import as_double, present

    return [scalar(f"{name}:{column}",
                   f"{function}({as_double(column)}) {present(columns[column])}")
            for column in input_cols for name, function in aggregates.items()]


def column_values(stage: str, stats: Mapping[str, StatRows], input_cols: Sequence[str],
                  names: Sequence[str]) -> dict[str, list[float | None]]:
    """The ``column_aggregates`` values: ``name -> one value per input column``;
    ``ConfigError`` naming the column when the first is missing (no value to fit on)."""
    out: dict[str, list[float | None]] = {name: [] for name in names}
    for column in input_cols:
        for name in names:
            out[name].append(one_value(stage, stats, f"{name}:{column}"))
        if out[names[0]][-1] is None:
            raise ConfigError(f"{stage}: column {column!r} has no value that is not NULL "
                              "or NaN to fit on")
    return out


def per_column(stage: str, what: str, lists: Sequence[Any], columns: int) -> None:
    """``ConfigError`` unless there is one of ``lists`` per input column."""
    if len(lists) != columns:
        raise ConfigError(f"{stage}: {what} has {len(lists)} entries for {columns} "
                          "input_cols")


def one_value(stage: str, stats: Mapping[str, StatRows], name: str) -> float | None:
    """A scalar statistic (``None``: no row had a value; an empty stream has no row)."""
    rows = stats.get(name) or []
    if len(rows) > 1:
        raise ConfigError(f"{stage}: statistic {name!r} came back with {len(rows)} rows")
    return rows[0][1] if rows else None
