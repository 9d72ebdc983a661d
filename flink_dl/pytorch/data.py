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

import pyarrow as pa
import torch

from flink_dl.channel.arrays import rechunk
from flink_dl.channel.features import feature_matrix, numeric_column
from flink_dl.errors import MissingColumnError

__all__ = ["rechunk", "to_tensors"]

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

FEATURES = "features"
LABEL = "label"


def to_tensors(table: pa.Table | pa.RecordBatch, features: Sequence[str] | None = None,
               label: str | None = None, columns: Sequence[str] | None = None,
               dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Tensors of one batch: every column by name, or ``features``/``label`` as documented.

    Features of any numeric Flink type (DECIMAL and BOOLEAN included) are cast to
    ``dtype``; the label keeps its own dtype (DECIMAL as float64).
    """
    names = table.schema.names
    wanted = list(columns) if columns is not None else None
    _check_columns(names, [*(features or []), *([label] if label else []), *(wanted or [])])
    out: dict[str, torch.Tensor] = {}
    if features is not None:
        out[FEATURES] = torch.from_numpy(feature_matrix(table, features, None)).to(dtype)
        if label is not None:
            out[LABEL] = torch.from_numpy(numeric_column(label, table.column(label)))
        for name in wanted or []:
            out[name] = _tensor(name, table.column(name))
        return out
    for name in wanted or names:
        out[name] = _tensor(name, table.column(name))
    return out


def _tensor(name: str, column: pa.Array | pa.ChunkedArray) -> torch.Tensor:
    return torch.from_numpy(numeric_column(name, column))


def _check_columns(names: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise MissingColumnError(f"columns {missing} are not in the input; it has "
                                 f"{list(names)}")
