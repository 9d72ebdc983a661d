"""Arrow record batches -> dicts of ``torch.Tensor``, sharing Arrow's buffers.

A numeric column without nulls becomes a tensor over the Arrow buffer itself (no copy) when
the batch lies within one Arrow batch; a list column of equal-length rows becomes a 2-D
tensor over its values buffer. ``features=[...]`` stacks several scalar columns into one
``(batch, len(features))`` tensor, which is one copy (columns are stored apart).
Tensors over Arrow memory are read-only in spirit: copy before modifying in place.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch

from flink_dl.channel.node_io import column_to_numpy, rechunk

__all__ = ["rechunk", "to_tensors"]

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

FEATURES = "features"
LABEL = "label"


def to_tensors(table: pa.Table | pa.RecordBatch, features: Sequence[str] | None = None,
               label: str | None = None, columns: Sequence[str] | None = None,
               dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Tensors of one batch: every column by name, or ``features``/``label`` as documented."""
    names = table.schema.names
    wanted = list(columns) if columns is not None else None
    if features is not None:
        _check_columns(names, [*features, *([label] if label else [])])
    elif wanted is not None:
        _check_columns(names, wanted)
    out: dict[str, torch.Tensor] = {}
    if features is not None:
        arrays = [column_to_numpy(n, table.column(n)) for n in features]
        if len(arrays) == 1:
            stacked = arrays[0] if arrays[0].ndim == 2 else arrays[0].reshape(-1, 1)
        else:
            stacked = np.stack(arrays, axis=1)
        out[FEATURES] = torch.from_numpy(stacked).to(dtype)
        if label is not None:
            out[LABEL] = torch.from_numpy(column_to_numpy(label, table.column(label)))
        for name in wanted or []:
            out[name] = _tensor(name, table.column(name))
        return out
    for name in wanted or names:
        out[name] = _tensor(name, table.column(name))
    return out


def _tensor(name: str, column: pa.Array | pa.ChunkedArray) -> torch.Tensor:
    array = column_to_numpy(name, column)
    if array.dtype == object:
        raise TypeError(f"column {name!r} of type {column.type} has no tensor form; select "
                        "numeric columns (columns=[...])")
    return torch.from_numpy(array)


def _check_columns(names: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise KeyError(f"columns {missing} are not in the input; it has {list(names)}")
