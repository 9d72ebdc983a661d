"""Arrow batches -> the elements of a ``tf.data.Dataset`` (numpy structures + their specs).

With ``features=[...]`` an element is ``x`` (float32 ``(rows, len(features))``, or one ARRAY
column as ``(rows, k)``) or ``(x, y)`` with ``label=``: what Keras ``fit`` takes. Features
of every numeric Flink type (DECIMAL and BOOLEAN included) are cast to float32 (the
feature rule of ``flink_dl.channel.features``). Otherwise an element is a dict of every
(or the ``columns=``) column by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from flink_dl.channel.arrays import column_to_numpy
from flink_dl.channel.features import feature_matrix, flink_type_name, numeric_column
from flink_dl.errors import FeatureTypeError


def to_element(table: pa.Table | pa.RecordBatch, features: Sequence[str] | None,
               label: str | None, columns: Sequence[str] | None) -> Any:
    """One batch as the dataset's element structure (numpy arrays)."""
    if features is not None:
        x = feature_matrix(table, features, np.float32)
        if label is None:
            return x
        return x, numeric_column(label, table.column(label))
    names = list(columns) if columns is not None else table.schema.names
    return {n: _column(n, table.column(n)) for n in names}


def _column(name: str, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_decimal(column.type):
        return numeric_column(name, column)
    return column_to_numpy(name, column)


def element_spec(schema: pa.Schema, features: Sequence[str] | None, label: str | None,
                 columns: Sequence[str] | None) -> Any:
    """The ``tf.TensorSpec`` structure of ``to_element``'s output for ``schema``."""
    import tensorflow as tf

    def spec(name: str) -> Any:
        dtype = schema.field(name).type
        if _is_list(dtype):
            return tf.TensorSpec([None, None], _tf_dtype(name, dtype.value_type))
        return tf.TensorSpec([None], _tf_dtype(name, dtype))

    if features is not None:
        one_list = len(features) == 1 and _is_list(schema.field(features[0]).type)
        x = tf.TensorSpec([None, None if one_list else len(features)], tf.float32)
        return x if label is None else (x, spec(label))
    names = list(columns) if columns is not None else schema.names
    return {n: spec(n) for n in names}


def _is_list(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_list(dtype) or pa.types.is_large_list(dtype)
                or pa.types.is_fixed_size_list(dtype))


def _tf_dtype(name: str, dtype: pa.DataType) -> Any:
    import tensorflow as tf

    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return tf.string
    if pa.types.is_boolean(dtype):
        return tf.bool
    if pa.types.is_decimal(dtype):
        return tf.float64
    try:
        return tf.as_dtype(np.dtype(dtype.to_pandas_dtype()))
    except (TypeError, NotImplementedError) as exc:
        raise FeatureTypeError(f"column {name!r} has Flink type {flink_type_name(dtype)}, "
                               "which has no TensorFlow dtype here (use numbers, booleans, "
                               "strings or arrays of numbers)") from exc
