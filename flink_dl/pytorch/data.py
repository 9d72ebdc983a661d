"""Arrow record batches -> dicts of ``torch.Tensor``, sharing Arrow's buffers.

A numeric column without nulls becomes a tensor over the Arrow buffer itself (no copy) when
the batch lies within one Arrow batch; a list column of equal-length rows becomes a 2-D
tensor over its values buffer. ``features=[...]`` stacks several scalar columns into one
``(batch, len(features))`` tensor, which is one copy (columns are stored apart).
Tensors over Arrow memory are read-only in spirit: copy before modifying in place.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch

from flink_dl.channel.node_io import column_to_numpy

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


def rechunk(batches: Iterator[pa.RecordBatch], batch_size: int,
            drop_last: bool) -> Iterator[pa.Table]:
    """Tables of exactly ``batch_size`` rows (the last may be short unless ``drop_last``).

    A slice within one record batch keeps sharing its buffers.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        offset = 0
        if pending_rows:  # complete the straddling batch first
            take = min(batch_size - pending_rows, batch.num_rows)
            pending.append(batch.slice(0, take))
            pending_rows += take
            offset = take
            if pending_rows == batch_size:
                yield pa.Table.from_batches(pending)
                pending, pending_rows = [], 0
        while batch.num_rows - offset >= batch_size:
            yield pa.Table.from_batches([batch.slice(offset, batch_size)])
            offset += batch_size
        if offset < batch.num_rows:
            pending.append(batch.slice(offset))
            pending_rows += batch.num_rows - offset
    if pending_rows and not drop_last:
        yield pa.Table.from_batches(pending)
