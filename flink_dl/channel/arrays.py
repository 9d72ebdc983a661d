"""Arrow to numpy for node code: re-chunking batches to a fixed size, columns as arrays.

Arrays share the Arrow buffers where Arrow allows (no nulls, one chunk); a column with
nulls raises ``NullValueError`` naming it.

May import: ``flink_dl.errors`` only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from flink_dl.errors import ConfigError, FlinkDLError, MissingColumnError


class NullValueError(FlinkDLError, ValueError):
    """A column holds nulls where the API needs values; the message names the column."""


def numpy_batches(batches: Iterator[pa.RecordBatch], batch_size: int,
                  columns: Sequence[str] | None = None,
                  drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Re-chunk ``batches`` into dicts of numpy arrays of exactly ``batch_size`` rows.

    Arrays share the Arrow buffers when a batch lies within one input batch and the column
    has no nulls; a column with nulls raises ``NullValueError`` naming it.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"numpy_batches: batch_size must be an integer >= 1, got "
                          f"{batch_size!r}")
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        if columns is not None:
            missing = [c for c in columns if c not in batch.schema.names]
            if missing:
                raise MissingColumnError(f"numpy_batches: column(s) {missing} are not in the "
                                         f"input; it has {batch.schema.names}")
            batch = batch.select(list(columns))
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= batch_size:
            table = pa.Table.from_batches(pending)
            yield _to_numpy(table.slice(0, batch_size))
            rest = table.slice(batch_size)
            pending = rest.to_batches()
            pending_rows = rest.num_rows
    if pending_rows and not drop_last:
        yield _to_numpy(pa.Table.from_batches(pending))


def rechunk(batches: Iterator[pa.RecordBatch], batch_size: int,
            drop_last: bool) -> Iterator[pa.Table]:
    """Tables of exactly ``batch_size`` rows (the last may be short unless ``drop_last``).

    A slice within one record batch keeps sharing its buffers.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
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


def _to_numpy(table: pa.Table) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if column.null_count:
            raise NullValueError(
                f"column {name!r} has {column.null_count} null value(s); numpy batches need "
                "values (fill or filter nulls in Flink, or read ctx.batches())")
        if column.num_chunks == 1:
            out[name] = column.chunk(0).to_numpy(zero_copy_only=False)
        else:
            out[name] = column.to_numpy()
    return out


def column_to_numpy(name: str, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One column as numpy, zero-copy where Arrow allows; nulls raise naming the column."""
    if column.null_count:
        raise NullValueError(f"column {name!r} has {column.null_count} null value(s); tensors "
                             "need values (fill or filter nulls in Flink)")
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) \
            or pa.types.is_fixed_size_list(column.type):
        offsets = None if pa.types.is_fixed_size_list(column.type) else \
            column.offsets.to_numpy()
        values = column.flatten().to_numpy(zero_copy_only=False)
        if len(column) == 0:
            return values.reshape(0, 0)
        width = len(values) // len(column)
        if offsets is not None and not np.all(np.diff(offsets) == width):
            raise ConfigError(f"list column {name!r} has rows of different lengths; arrays "
                              "need equal lengths")
        return values.reshape(len(column), width)
    if pa.types.is_boolean(column.type) or pa.types.is_string(column.type):
        return column.to_numpy(zero_copy_only=False)
    return column.to_numpy(zero_copy_only=True)
