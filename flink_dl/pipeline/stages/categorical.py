"""``StringIndexer`` and ``OneHotEncoder``: categories fitted from the data.

A category is the column's value as Flink casts it to STRING (``'red'``, ``'12'``,
``'TRUE'``), so STRING, integer and BOOLEAN columns all work. An invalid value is NULL or a
category the fit did not see: ``handle_invalid="error"`` fails the job naming stage, column
and value; ``"skip"`` drops the row; ``"keep"`` gives it the extra index
``len(vocabulary)`` (``StringIndexer``) or all zeros (``OneHotEncoder``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flink_dl.errors import ConfigError
from flink_dl.pipeline.api import register
from flink_dl.pipeline.sql import STRING_ROOTS, Column, quote, raise_invalid
from flink_dl.pipeline.stages.base import (
    FeatureEstimator,
    FeatureModel,
    StatQuery,
    StatRows,
    grouped,
    per_column,
)

ORDER_TYPES = ("frequencyDesc", "frequencyAsc", "alphabetAsc", "alphabetDesc", "arbitrary")


def category_key(column: Column) -> str:
    """The SQL text of a column's category (its value as STRING)."""
    name = quote(column.name)
    return name if column.root in STRING_ROOTS else f"CAST({name} AS STRING)"


def _in_list(model: FeatureModel, key: str, categories: Sequence[str]) -> str:
    return f"{key} IN ({', '.join(model.text(c) for c in categories)})"


def _invalid(stage: FeatureModel, column: Column, categories: Sequence[str]) -> str:
    return raise_invalid(stage.stage_name, column.name, "is NULL or not a fitted category",
                         quote(column.name))


def _counts(stats: Mapping[str, StatRows], name: str) -> dict[str, float]:
    return {k: float(v or 0) for k, v in stats.get(name) or [] if k is not None}


def _check_vocabularies(stage: str, input_cols: list[str],
                        vocabularies: Sequence[Sequence[str]]) -> list[list[str]]:
    per_column(stage, "the category lists", vocabularies, len(input_cols))
    out = []
    for name, vocabulary in zip(input_cols, vocabularies, strict=True):
        if not vocabulary:
            raise ConfigError(f"{stage}: column {name!r} has no category (no non-NULL value "
                              "was seen when fitting)")
        out.append([str(v) for v in vocabulary])
    return out


@register
class StringIndexerModel(FeatureModel):
    """Each category mapped to its index in ``model.vocabulary[i]`` (INT)."""

    kind = "StringIndexerModel"
    family = "categorical"

    def __init__(self, input_cols: Sequence[str], vocabulary: Sequence[Sequence[str]], *,
                 output_cols: Sequence[str] | None = None,
                 string_order_type: str = "frequencyDesc",
                 handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.string_order_type = _order_type(string_order_type)
        self.vocabulary = _check_vocabularies(self.stage_name, self.input_cols, vocabulary)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "string_order_type": self.string_order_type}

    def model_data(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary}

    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        key, vocabulary = category_key(column), self.vocabulary[index]
        whens = " ".join(f"WHEN {self.text(c)} THEN {i}" for i, c in enumerate(vocabulary))
        condition = None
        if self.handle_invalid == "keep":
            other = str(len(vocabulary))
        elif self.handle_invalid == "error":
            other = _invalid(self, column, vocabulary)
        else:
            other, condition = "-1", _in_list(self, key, vocabulary)
        return [(self.output_name(index),
                 f"CAST(CASE {key} {whens} ELSE {other} END AS INT)")], condition


def _order_type(value: str) -> str:
    if value not in ORDER_TYPES:
        raise ConfigError(f"StringIndexer: string_order_type must be one of "
                          f"{list(ORDER_TYPES)}, got {value!r}")
    return value


@register
class StringIndexer(FeatureEstimator):
    """Fits each column's categories, ordered by ``string_order_type`` (Flink ML's
    ``stringOrderType``; default ``frequencyDesc``, ties alphabetical; ``arbitrary`` is
    alphabetical here)."""

    kind = "StringIndexer"
    family = "categorical"

    def __init__(self, input_cols: Sequence[str], output_cols: Sequence[str] | None = None, *,
                 string_order_type: str = "frequencyDesc",
                 handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.string_order_type = _order_type(string_order_type)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "string_order_type": self.string_order_type}

    def statistics(self, columns: Mapping[str, Column]) -> list[StatQuery]:
        return [grouped(name, category_key(columns[name]), "COUNT(*)",
                        f"{quote(name)} IS NOT NULL") for name in self.input_cols]

    def model_from(self, stats: Mapping[str, StatRows]) -> FeatureModel:
        vocabularies = []
        for name in self.input_cols:
            counts = _counts(stats, name)
            order = self.string_order_type
            if order == "frequencyDesc":
                keys = sorted(counts, key=lambda k: (-counts[k], k))
            elif order == "frequencyAsc":
                keys = sorted(counts, key=lambda k: (counts[k], k))
            else:
                keys = sorted(counts, reverse=order == "alphabetDesc")
            vocabularies.append(keys)
        return StringIndexerModel(self.input_cols, vocabularies, output_cols=self.output_cols,
                                  string_order_type=self.string_order_type,
                                  handle_invalid=self.handle_invalid)


def column_suffix(category: str) -> str:
    """A category as part of a column name: letters, digits and ``_`` only."""
    return re.sub(r"[^0-9A-Za-z_]", "_", category) or "_"


@register
class OneHotEncoderModel(FeatureModel):
    """One DOUBLE column per category of ``model.categories[i]``, named
    ``<col>_<category>`` (``output_cols`` gives other prefixes and keeps the input)."""

    kind = "OneHotEncoderModel"
    family = "categorical"

    def __init__(self, input_cols: Sequence[str], categories: Sequence[Sequence[str]], *,
                 output_cols: Sequence[str] | None = None, drop_last: bool = False,
                 handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.drop_last = bool(drop_last)
        self.categories = _check_vocabularies(self.stage_name, self.input_cols, categories)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "drop_last": self.drop_last}

    def model_data(self) -> dict[str, Any]:
        return {"categories": self.categories}

    def output_names(self, index: int) -> list[str]:
        """The columns input column ``index`` becomes, in order."""
        categories = self.categories[index]
        if self.drop_last:
            categories = categories[:-1]
        prefix = self.output_name(index)
        return [f"{prefix}_{column_suffix(c)}" for c in categories]

    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        key, categories = category_key(column), self.categories[index]
        names = self.output_names(index)
        exprs = [(name, f"CASE WHEN {key} = {self.text(c)} THEN 1.0E0 ELSE 0.0E0 END")
                 for name, c in zip(names, categories, strict=False)]
        condition = None
        if self.handle_invalid == "skip":
            condition = _in_list(self, key, categories)
        elif self.handle_invalid == "error":
            valid = f"{key} IS NOT NULL AND {_in_list(self, key, categories)}"
            check = f"CASE WHEN {valid} THEN 0.0E0 ELSE {_invalid(self, column, categories)} END"
            if exprs:
                first_name, first = exprs[0]
                exprs[0] = (first_name, f"({first}) + {check}")
        return exprs, condition


@register
class OneHotEncoder(FeatureEstimator):
    """Fits each column's categories (sorted: numerically for number columns, else
    alphabetically); ``drop_last`` (Flink ML's ``dropLast``, default False here, as
    scikit-learn) leaves out the last category's column."""

    kind = "OneHotEncoder"
    family = "categorical"

    def __init__(self, input_cols: Sequence[str], output_cols: Sequence[str] | None = None, *,
                 drop_last: bool = False, handle_invalid: str = "error") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.drop_last = bool(drop_last)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "drop_last": self.drop_last}

    def statistics(self, columns: Mapping[str, Column]) -> list[StatQuery]:
        self._numeric = {n for n in self.input_cols if columns[n].root not in STRING_ROOTS}
        return [grouped(name, category_key(columns[name]), "COUNT(*)",
                        f"{quote(name)} IS NOT NULL") for name in self.input_cols]

    def model_from(self, stats: Mapping[str, StatRows]) -> FeatureModel:
        categories = []
        for name in self.input_cols:
            keys = list(_counts(stats, name))
            numeric = name in getattr(self, "_numeric", set())
            categories.append(sorted(keys, key=_number_or_text if numeric else str))
        model = OneHotEncoderModel(self.input_cols, categories, output_cols=self.output_cols,
                                   drop_last=self.drop_last, handle_invalid=self.handle_invalid)
        for index, name in enumerate(self.input_cols):
            names = model.output_names(index)
            if len(set(names)) != len(names):
                raise ConfigError(f"OneHotEncoder: column {name!r} has categories that give "
                                  f"the same column name: {names}")
        return model


def _number_or_text(key: str) -> tuple[int, float | str]:
    try:
        return 0, float(key)
    except ValueError:
        return 1, key
