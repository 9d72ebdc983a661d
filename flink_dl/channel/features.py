"""Feature columns -> numeric arrays: the one type rule of both plugins and of ``predict``.

Every numeric Flink type is a feature: TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE,
DECIMAL and BOOLEAN (and an ARRAY of them, as one column of equal-length rows). A column
is cast to the tensor dtype; a column whose type already matches it is handed over without
a copy. Anything else (STRING, BYTES, DATE, TIMESTAMP, ...) is refused with
``FeatureTypeError`` naming the column and its Flink type, at build time where the schema
is known (``train``/``predict``), else when the loader is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flink_dl.errors import FeatureTypeError, MissingColumnError

#: The Flink types a feature (or label) column may have.
NUMERIC_FLINK_TYPES = "TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL, BOOLEAN"

_ARROW_TO_FLINK = [
    (pa.types.is_int8, "TINYINT"), (pa.types.is_int16, "SMALLINT"), (pa.types.is_int32, "INT"),
    (pa.types.is_int64, "BIGINT"), (pa.types.is_float32, "FLOAT"),
    (pa.types.is_float64, "DOUBLE"), (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_string, "STRING"), (pa.types.is_large_string, "STRING"),
    (pa.types.is_binary, "BYTES"), (pa.types.is_large_binary, "BYTES"),
    (pa.types.is_date, "DATE"), (pa.types.is_timestamp, "TIMESTAMP"),
]


def flink_type_name(arrow_type: pa.DataType) -> str:
    """The Flink SQL name of the type a column of ``arrow_type`` had in Flink."""
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision}, {arrow_type.scale})"
    if _is_list(arrow_type):
        return f"ARRAY<{flink_type_name(arrow_type.value_type)}>"
    for check, name in _ARROW_TO_FLINK:
        if check(arrow_type):
            return name
    return str(arrow_type).upper()


def is_numeric(arrow_type: pa.DataType) -> bool:
    """A scalar type a feature may have (integer, floating, decimal, boolean)."""
    return bool(pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
                or pa.types.is_decimal(arrow_type) or pa.types.is_boolean(arrow_type))


def is_feature_type(arrow_type: pa.DataType) -> bool:
    """A numeric scalar, or an ARRAY of numeric scalars."""
    if _is_list(arrow_type):
        return is_numeric(arrow_type.value_type)
    return is_numeric(arrow_type)


def check_feature_columns(schema: pa.Schema, features: Sequence[str] | None,
                          label: str | None = None, *, where: str,
                          flink_types: Mapping[str, str] | None = None) -> None:
    """``MissingColumnError`` naming columns ``schema`` lacks, ``FeatureTypeError`` naming
    a feature (or the label) whose type is not numeric. ``flink_types`` gives the columns'
    Flink types for the message (default: derived from the Arrow types)."""
    wanted = [*(features or []), *([label] if label else [])]
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise MissingColumnError(f"{where}: column(s) {missing} are not in the input; it has "
                                 f"{schema.names}")
    for name in wanted:
        arrow_type = schema.field(name).type
        if not is_feature_type(arrow_type):
            kind = "label" if name == label and name not in (features or []) else "feature"
            flink_type = (flink_types or {}).get(name) or flink_type_name(arrow_type)
            raise FeatureTypeError(
                f"{where}: {kind} column {name!r} has Flink type {flink_type}; {kind}s must "
                f"be numeric ({NUMERIC_FLINK_TYPES}) or an ARRAY of them. Cast or encode it "
                f"in Flink first (e.g. CAST({name} AS DOUBLE), or CASE WHEN {name} = '...' "
                "THEN 1.0 ELSE 0.0 END)")


def numeric_column(name: str, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One feature column as numpy in its natural dtype (DECIMAL as float64, BOOLEAN as
    bool); zero-copy for integer and floating columns within one chunk. Nulls raise
    ``NullValueError`` naming the column."""
    from flink_dl.channel.arrays import column_to_numpy

    arrow_type = column.type
    if not is_feature_type(arrow_type):
        raise FeatureTypeError(f"feature column {name!r} has Flink type "
                               f"{flink_type_name(arrow_type)}; features must be numeric "
                               f"({NUMERIC_FLINK_TYPES}) or an ARRAY of them")
    if pa.types.is_decimal(arrow_type):
        column = pc.cast(column, pa.float64())
    elif _is_list(arrow_type) and pa.types.is_decimal(arrow_type.value_type):
        column = pc.cast(column, pa.list_(pa.float64()))
    return column_to_numpy(name, column)


def feature_matrix(table: pa.Table | pa.RecordBatch, features: Sequence[str],
                   dtype: np.dtype | type | None = np.float32) -> np.ndarray:
    """The ``features`` of one batch as a ``(rows, len(features))`` array (one ARRAY
    column: ``(rows, width)``) of ``dtype`` (``None``: the columns' common dtype). A single
    column already of ``dtype`` is not copied."""
    arrays = [numeric_column(name, table.column(name)) for name in features]
    if len(arrays) == 1:
        x = arrays[0] if arrays[0].ndim == 2 else arrays[0].reshape(-1, 1)
    else:
        x = np.stack(arrays, axis=1)
    return x if dtype is None else x.astype(dtype, copy=False)


def _is_list(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
                or pa.types.is_fixed_size_list(arrow_type))
