"""Arrow batches -> the elements of a ``tf.data.Dataset`` (numpy structures + their specs).

With ``features=[...]`` an element is ``x`` (float32 ``(rows, len(features))``, or one list
column as ``(rows, k)``) or ``(x, y)`` with ``label=``: what Keras ``fit`` takes. Otherwise
it is a dict of every (or the ``columns=``) column by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from flink_dl.channel.node_io import column_to_numpy
from flink_dl.errors import ConfigError


def check_columns(schema: pa.Schema, features: Sequence[str] | None, label: str | None,
                  columns: Sequence[str] | None) -> None:
    """``ConfigError`` naming any requested column the input lacks."""
    wanted = [*(features or []), *([label] if label else []), *(columns or [])]
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise ConfigError(f"dataset: columns {missing} are not in the input; it has "
                          f"{schema.names}")
    if features is not None and columns is not None:
        raise ConfigError("dataset: pass either features=/label= or columns=, not both")


def to_element(table: pa.Table | pa.RecordBatch, features: Sequence[str] | None,
               label: str | None, columns: Sequence[str] | None) -> Any:
    """One batch as the dataset's element structure (numpy arrays)."""
    if features is not None:
        arrays = [column_to_numpy(n, table.column(n)) for n in features]
        if len(arrays) == 1 and arrays[0].ndim == 2:
            x = arrays[0].astype(np.float32, copy=False)
        else:
            x = np.stack(arrays, axis=1).astype(np.float32, copy=False)
        if label is None:
            return x
        return x, column_to_numpy(label, table.column(label))
    names = list(columns) if columns is not None else table.schema.names
    return {n: column_to_numpy(n, table.column(n)) for n in names}


def element_spec(schema: pa.Schema, features: Sequence[str] | None, label: str | None,
                 columns: Sequence[str] | None) -> Any:
    """The ``tf.TensorSpec`` structure of ``to_element``'s output for ``schema``."""
    import tensorflow as tf

    def spec(name: str) -> Any:
        dtype = schema.field(name).type
        if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) \
                or pa.types.is_fixed_size_list(dtype):
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
    try:
        return tf.as_dtype(np.dtype(dtype.to_pandas_dtype()))
    except (TypeError, NotImplementedError) as exc:
        raise ConfigError(f"column {name!r}: Arrow type {dtype} has no TensorFlow dtype "
                          "here (use numbers, bools, strings or lists of numbers)") from exc
