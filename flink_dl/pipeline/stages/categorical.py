"""``StringIndexer`` and ``OneHotEncoder``: categories fitted from the data.

A category is the column's value as Flink casts it to STRING (``'red'``, ``'12'``,
``'TRUE'``), so STRING, integer and BOOLEAN columns all work. An invalid value is NULL or a
category the fit did not see: ``handle_invalid="error"`` fails the job naming stage, column
and value; ``"skip"`` drops the row; ``"keep"`` gives it the extra index
``len(vocabulary)`` (``StringIndexer``) or all zeros (``OneHotEncoder``).

The lookup itself, in Flink SQL, is ``category_lookup``'s.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flink_dl.errors import ConfigError
from flink_dl.pipeline.api import register
from flink_dl.pipeline.sql import (
    STRING_ROOTS,
    Column,
    quote,
    string_literal,
)
from flink_dl.pipeline.stages.base import (
    FeatureEstimator,
    FeatureModel,
    per_column,
)
from flink_dl.pipeline.stages.category_lookup import (
    CategoryLookupModel,
    EncodedCategories,
    category_key,
)
from flink_dl.pipeline.statistics import StatQuery, StatRows, grouped

log = logging.getLogger(__name__)

ORDER_TYPES = ("frequencyDesc", "frequencyAsc", "alphabetAsc", "alphabetDesc", "arbitrary")


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
class StringIndexerModel(CategoryLookupModel):
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

    def categories_of(self, index: int) -> list[str]:
        return self.vocabulary[index]

    def chunk_sql(self, index: int, encoded: EncodedCategories) -> list[str]:
        """Parameters while serving where the categories fit in one bucket (a new version
        may reorder them); above that, literals (structure): a parameter rides in every
        row."""
        if encoded.buckets == 1:
            return [self.text(chunk) for chunk in encoded.chunks]
        return super().chunk_sql(index, encoded)

    def category_sql(self, index: int) -> list[str]:
        """Parameters while serving (a new version may reorder them)."""
        return [self.text(c) for c in self.vocabulary[index]]

    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        condition = None
        if self.handle_invalid == "error":
            out = self.found_sql(index, column, self.invalid(column))
        else:
            out = self.found_sql(index, column)
            if self.handle_invalid == "skip":
                condition = f"{out} < {len(self.vocabulary[index])}"
        return [(self.output_name(index), f"CAST({out} AS INT)")], condition


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
class OneHotEncoderModel(CategoryLookupModel):
    """One DOUBLE column per category of ``model.categories[i]``, named
    ``<col>_<category>`` (``output_cols`` gives other prefixes and keeps the input); with
    ``output="array"``, one ``ARRAY<DOUBLE>`` column ``<col>`` instead."""

    kind = "OneHotEncoderModel"
    family = "categorical"

    def __init__(self, input_cols: Sequence[str], categories: Sequence[Sequence[str]], *,
                 output_cols: Sequence[str] | None = None, drop_last: bool = False,
                 handle_invalid: str = "error", output: str = "columns") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.drop_last = bool(drop_last)
        self.output = _output_form(output)
        self.categories = _check_vocabularies(self.stage_name, self.input_cols, categories)
        if self.output == "array" and self.drop_last and min(map(len, self.categories)) < 2:
            raise ConfigError("OneHotEncoderModel: drop_last with a single category leaves "
                              "an empty array")
        many = [n for n, c in zip(self.input_cols, self.categories, strict=True)
                if len(c) > MANY_COLUMNS]
        if self.output == "columns" and many:
            log.warning("OneHotEncoderModel: column(s) %s have more than %d categories; "
                        "one output column each makes Flink's code generation slow (minutes "
                        "at 10,000): output='array' gives one ARRAY<DOUBLE> column", many,
                        MANY_COLUMNS)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "drop_last": self.drop_last, "output": self.output}

    def model_data(self) -> dict[str, Any]:
        return {"categories": self.categories}

    def output_names(self, index: int) -> list[str]:
        """The columns input column ``index`` becomes, in order."""
        if self.output == "array":
            return [self.output_name(index)]
        categories = self.categories[index]
        if self.drop_last:
            categories = categories[:-1]
        prefix = self.output_name(index)
        return [f"{prefix}_{column_suffix(c)}" for c in categories]

    def categories_of(self, index: int) -> list[str]:
        """Literals even while serving: they name the output columns, so other categories
        are another structure anyway."""
        return self.categories[index]

    def column_sql(self, index: int, column: Column) -> tuple[list[tuple[str, str]], str | None]:
        found = self.found_sql(index, column)
        if self.output == "array":
            size = len(self.categories[index]) - self.drop_last
            exprs = [(self.output_name(index), one_hot_array(found, size))]
        elif self.is_small(index):  # as typed by hand: an equality per column
            key = category_key(column)
            exprs = [(name, f"CASE WHEN {key} = {literal} THEN 1.0E0 ELSE 0.0E0 END")
                     for name, literal in zip(self.output_names(index),
                                              self.category_sql(index), strict=False)]
        else:
            exprs = [(name, f"CASE WHEN {found} = {i} THEN 1.0E0 ELSE 0.0E0 END")
                     for i, name in enumerate(self.output_names(index))]
        if self.handle_invalid == "skip":
            return exprs, f"{found} < {len(self.categories[index])}"
        if self.handle_invalid == "error":  # a condition: read whichever outputs are read
            return exprs, f"{self.found_sql(index, column, self.invalid(column))} >= 0"
        return exprs, None


#: Categories above which one output column per category is slow to compile.
MANY_COLUMNS = 2_000
OUTPUT_FORMS = ("columns", "array")


def _output_form(value: str) -> str:
    if value not in OUTPUT_FORMS:
        raise ConfigError(f"OneHotEncoder: output must be one of {list(OUTPUT_FORMS)}, got "
                          f"{value!r}")
    return value


def one_hot_array(found: str, size: int) -> str:
    """SQL: an ``ARRAY<DOUBLE>`` of ``size`` with 1.0 at the INT ``found`` (all 0.0 when
    ``found`` is outside ``[0, size)``), built from text: an array literal of ``size``
    elements would be ``size`` Java statements in one method (64 KB at most)."""
    zeros = string_literal(",".join(["0"] * size))
    text = (f"CASE WHEN {found} >= 0 AND {found} < {size} THEN CONCAT(REPEAT('0,', {found}), "
            f"'1', REPEAT(',0', {size - 1} - {found})) ELSE {zeros} END")
    return f"CAST(SPLIT({text}, ',') AS ARRAY<DOUBLE>)"


@register
class OneHotEncoder(FeatureEstimator):
    """Fits each column's categories (sorted: numerically for number columns, else
    alphabetically); ``drop_last`` (Flink ML's ``dropLast``, default False here, as
    scikit-learn) leaves out the last category's column. ``output="array"`` gives one
    ``ARRAY<DOUBLE>`` column per input column (Flink ML's vector output) instead of one
    column per category: for thousands of categories."""

    kind = "OneHotEncoder"
    family = "categorical"

    def __init__(self, input_cols: Sequence[str], output_cols: Sequence[str] | None = None, *,
                 drop_last: bool = False, handle_invalid: str = "error",
                 output: str = "columns") -> None:
        self._set_columns(input_cols, output_cols, handle_invalid)
        self.drop_last = bool(drop_last)
        self.output = _output_form(output)

    def get_params(self) -> dict[str, Any]:
        return {**self._column_params(), "drop_last": self.drop_last, "output": self.output}

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
                                   drop_last=self.drop_last, handle_invalid=self.handle_invalid,
                                   output=self.output)
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
