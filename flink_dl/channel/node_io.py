"""The node-process side of the data channels: reading input batches, writing output rows.

Epochs: the Flink input is read once; during the first pass the node caches every batch
in an Arrow IPC file in its private work dir, and passes 2..N replay that file through a
memory map (no copy, no second read of the Flink source). Bounded input only: an
unbounded stream has a single, endless epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from flink_dl.channel.arrays import NullValueError
from flink_dl.channel.codecs import Codec
from flink_dl.channel.ring import FrameKind, Ring
from flink_dl.errors import FlinkDLError, InputEpochError, InvalidStateError

log = logging.getLogger(__name__)

CACHE_FILE = "input-cache.arrow"


class SchemaChangedError(FlinkDLError, ValueError):
    """The input's schema changed mid-stream; the message names the columns."""


class OutputSchemaError(FlinkDLError, ValueError):
    """Rows written by the node do not match the declared output schema."""


def describe_schema_change(old: pa.Schema, new: pa.Schema) -> str:
    parts = []
    old_fields = {f.name: f.type for f in old}
    new_fields = {f.name: f.type for f in new}
    for name in old_fields.keys() - new_fields.keys():
        parts.append(f"column {name!r} disappeared")
    for name in new_fields.keys() - old_fields.keys():
        parts.append(f"column {name!r} appeared ({new_fields[name]})")
    for name in old_fields.keys() & new_fields.keys():
        if old_fields[name] != new_fields[name]:
            parts.append(f"column {name!r} changed type {old_fields[name]} -> {new_fields[name]}")
    if not parts and old.names != new.names:
        parts.append(f"column order changed {old.names} -> {new.names}")
    return "; ".join(parts) or "schema metadata changed"


class Epoch:
    """One pass over the node's input; iterate it (once) for its batches."""

    def __init__(self, number: int, batches: Iterator[pa.RecordBatch]) -> None:
        self.number = number
        self._batches = batches
        self._started = False
        #: True while a consumer is inside the iteration (started, not finished or closed).
        self.open = False

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._started:
            raise InputEpochError(
                f"epoch {self.number} of the input was already iterated; each epoch can be "
                "read once: ask for the next one (iterate the loader again, or make a new "
                "one per epoch)")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[pa.RecordBatch]:
        self.open = True
        try:
            # A plain loop, not ``yield from``: closing this iterator (a loop that broke
            # off) must not close the channel reader, which ``drain`` still consumes.
            for batch in self._batches:  # noqa: UP028 - see above
                yield batch
        finally:
            self.open = False

    def drain(self) -> None:
        """Consume what the entry did not read of this epoch (the channel must move on)."""
        for _ in self._batches:
            pass


class NodeInput:
    """Reads the node's input channel: decoded batches, epochs, schema checks."""

    def __init__(self, ring: Ring, codec: Codec, epochs: int, work_dir: Path,
                 sequenced: bool = False) -> None:
        self.ring = ring
        #: Exactly-once: the first frame is the restored range, every DATA frame starts
        #: with its sequence number and mark (``flink_dl.channel.exactly_once``).
        self.sequenced = sequenced
        #: Exactly-once: the sequence number of the last batch handed out.
        self.position = 0
        #: Exactly-once: (sequence number, first row) of the last batch handed out (a
        #: resumed batch starts after the rows its saved state covers).
        self.last_frame = (0, 0)
        #: Exactly-once: the newest mark per packing instance among batches handed out.
        self.marks: dict[int, int] = {}
        self._range: tuple[int, int] | None = None
        self._resume: tuple[int, int] | None = None
        self.on_progress: Callable[[], None] | None = None
        self.codec = codec
        self.epochs_total = epochs
        self.cache_path = work_dir / CACHE_FILE
        self.schema: pa.Schema | None = None
        self.epoch = 0
        self.rows_read = 0
        #: Rows of the first pass once it has ended (``None`` before): the node's share.
        self.first_pass_rows: int | None = None
        #: Called with ``first_pass_rows`` when the first pass ends.
        self.on_first_pass_end: Callable[[int], None] | None = None
        #: Names the setting behind ``epochs`` in errors (e.g. ``TorchConfig.epochs``).
        self.epochs_setting = "add_role(epochs=...)"
        self._next_number = 0
        self._current: Epoch | None = None

    def epochs(self) -> Iterator[Epoch]:
        """Yield one ``Epoch`` per pass; the first streams from Flink, the rest from cache.

        Every caller shares one sequence: calling ``epochs()`` (or ``next_epoch()``) again
        goes on with the next epoch not handed out yet, so a loader made once per epoch
        and a loader iterated once per epoch read the same passes.
        """
        while self._next_number < self.epochs_total:
            yield self.next_epoch()

    def next_epoch(self) -> Epoch:
        """The next epoch; ``InputEpochError`` when none is left or the previous one is still
        being iterated (an epoch loop nested in another)."""
        previous = self._current
        if previous is not None and previous.open:
            raise InputEpochError(
                f"epoch {previous.number + 1} was asked for while epoch {previous.number} is "
                "still being iterated: finish (or break out of) one epoch's loop before "
                "starting the next; do not iterate the input inside its own loop")
        if self._next_number >= self.epochs_total:
            raise InputEpochError(
                f"the input has {self.epochs_total} epoch(s) ({self.epochs_setting}) and "
                f"all were read; epoch {self._next_number + 1} was asked for. Iterate the "
                "loader (or make a new one) once per epoch, epochs times in all")
        if previous is not None:
            previous.drain()  # an epoch the entry did not finish is still consumed
        number = self._next_number
        self._next_number += 1
        self.epoch = number
        self._current = Epoch(number, self._first_pass() if number == 0 else self._replay())
        return self._current

    def waiting(self) -> bool:
        """Whether input frames wait in the channel, not read yet (a streaming entry that
        has learned everything read and finds none waiting has caught up)."""
        return self.ring.used_bytes > 0

    @property
    def epochs_left(self) -> int:
        """Epochs not handed out yet."""
        return self.epochs_total - self._next_number

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every batch of every epoch, in order (``self.epoch`` tells which epoch)."""
        for epoch in self.epochs():
            yield from epoch

    def restore_range(self) -> tuple[int, int]:
        """Exactly-once: the restored range ``(acked, seq)`` (read once, first): saved state
        at a position in it can resume; the batches after ``acked`` are replayed."""
        if not self.sequenced:
            raise InvalidStateError("restore_range: the input is not exactly-once")
        if self._range is None:
            from flink_dl.channel.exactly_once import decode_restore

            kind, view = self.ring.recv_view()
            if kind is not FrameKind.DATA:
                raise FlinkDLError(f"exactly-once input: expected the restored range "
                                   f"first, got a {kind.name} frame")
            self._range = decode_restore(bytes(view))
            self.ring.release()
        return self._range

    def resume_at(self, seq: int, offset: int = 0) -> None:
        """Exactly-once: the saved state covers every batch up to ``seq`` and ``offset``
        rows of the next one; reading goes on after them."""
        acked, sent = self.restore_range()
        if not acked <= seq <= sent or (offset and seq + 1 > sent):
            raise FlinkDLError(f"exactly-once input: cannot resume at batch {seq} row "
                               f"{offset}: the restored range is {acked}..{sent}")
        if self._current is not None:
            raise FlinkDLError("exactly-once input: resume before reading any input")
        self._resume = (seq, offset)
        self.position = seq

    def _first_pass(self) -> Iterator[pa.RecordBatch]:
        writer = None
        if self.sequenced:
            self._check_resumed()
        try:
            while True:
                kind, view = self.ring.recv_view()
                if kind is FrameKind.END:
                    self.ring.release()
                    self._end_first_pass()
                    return
                if kind is FrameKind.ERROR:
                    raise FlinkDLError(f"input channel error: {bytes(view).decode()}")
                if kind is not FrameKind.DATA:
                    self.ring.release()
                    continue
                data = bytes(view)
                self.ring.release()
                first_row = 0
                if self.sequenced:
                    skip, first_row, data = self._sequenced(data)
                    if skip:
                        continue
                batch = self.codec.decode(pa.py_buffer(data))
                self._check_schema(batch.schema)
                if first_row:
                    batch = batch.slice(first_row)
                if self.epochs_total > 1:
                    if writer is None:
                        writer = pa.ipc.new_file(str(self.cache_path), batch.schema)
                    writer.write_batch(batch)
                self.rows_read += batch.num_rows
                if self.on_progress is not None:
                    self.on_progress()
                yield batch
        finally:
            if writer is not None:
                writer.close()

    def _check_resumed(self) -> None:
        acked, sent = self.restore_range()
        if self._resume is None:
            if sent:
                raise FlinkDLError(
                    f"exactly-once input restored (batches {acked + 1}..{sent} replayed): "
                    "resume the saved state before reading input (ctx.load_state(), or the "
                    "training context's ctx.resume(model, optimizer, loader))")
            self._resume = (0, 0)
        self._expected = acked + 1

    def _sequenced(self, data: bytes) -> tuple[bool, int, bytes]:
        """Check a data frame's number; whether to skip it (its rows are in the resumed
        state), the first row to hand out, and the payload."""
        from flink_dl.channel.exactly_once import split_sequenced

        seq, mark, payload = split_sequenced(data)
        if seq != self._expected:
            raise FlinkDLError(f"exactly-once input: batch {seq} arrived where batch "
                               f"{self._expected} was due (a gap or a duplicate)")
        self._expected = seq + 1
        assert self._resume is not None
        resume_seq, resume_offset = self._resume
        if seq <= resume_seq:
            return True, 0, payload
        first_row = resume_offset if seq == resume_seq + 1 else 0
        if mark[0] and mark[1] > self.marks.get(mark[0], -1):
            self.marks[mark[0]] = mark[1]
        self.position = seq
        self.last_frame = (seq, first_row)
        return False, first_row, payload

    def _end_first_pass(self) -> None:
        self.first_pass_rows = self.rows_read
        if self.on_first_pass_end is not None:
            self.on_first_pass_end(self.rows_read)

    def _replay(self) -> Iterator[pa.RecordBatch]:
        if not self.cache_path.exists():
            return
        with pa.memory_map(str(self.cache_path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                self.rows_read += batch.num_rows
                yield batch

    def _check_schema(self, schema: pa.Schema) -> None:
        if self.schema is None:
            self.schema = schema
        elif not schema.equals(self.schema):
            raise SchemaChangedError(
                f"input schema changed mid-stream: {describe_schema_change(self.schema, schema)}")


class NodeOutput:
    """Writes rows to the node's output channel, checked against the declared schema."""

    def __init__(self, ring: Ring, codec: Codec, schema: pa.Schema) -> None:
        self.ring = ring
        self.codec = codec
        self.schema = schema
        self.rows_written = 0
        self.closed = False

    def write(self, rows: Any) -> None:
        """Write rows: a RecordBatch/Table, a dict of columns, a list of row dicts, or a
        pandas DataFrame. Columns are matched to the output schema by name."""
        if self.closed:
            raise InvalidStateError("the node's output is closed")
        batch = to_batch(rows, self.schema)
        if batch.num_rows == 0:
            return
        payload = self.codec.encode(batch)
        size = len(payload) if not isinstance(payload, pa.Buffer) else payload.size
        if size > self.ring.max_message_bytes and batch.num_rows > 1:
            half = batch.num_rows // 2
            self.write(batch.slice(0, half))
            self.write(batch.slice(half))
            return
        self.ring.send(memoryview(payload) if isinstance(payload, pa.Buffer) else payload)
        self.rows_written += batch.num_rows

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.ring.send_end()


def to_batch(rows: Any, schema: pa.Schema) -> pa.RecordBatch:
    """Convert ``rows`` to a batch of ``schema``; errors name the column at fault."""
    if isinstance(rows, pa.Table):
        rows = rows.combine_chunks().to_batches()[0] if rows.num_rows else \
            pa.RecordBatch.from_pylist([], schema=schema)
    if isinstance(rows, pa.RecordBatch):
        columns = {name: rows.column(name) for name in rows.schema.names}
    elif isinstance(rows, Mapping):
        columns = dict(rows)
    elif hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas DataFrame
        columns = {str(c): rows[c].to_numpy() for c in rows.columns}
    elif isinstance(rows, Sequence):
        if not rows:
            return pa.RecordBatch.from_pylist([], schema=schema)
        bad = [r for r in rows if not isinstance(r, Mapping)]
        if bad:
            raise OutputSchemaError(f"rows must be dicts of column -> value, got {bad[0]!r}")
        columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
        extra = {k for r in rows for k in r} - set(schema.names)
        if extra:
            raise OutputSchemaError(f"columns {sorted(extra)} are not in the output schema "
                                    f"{schema.names}")
    else:
        raise OutputSchemaError(f"cannot write {type(rows).__name__}; write a RecordBatch, a "
                                "dict of columns, a list of row dicts or a DataFrame")
    missing = [n for n in schema.names if n not in columns]
    extra = [n for n in columns if n not in schema.names]
    if missing or extra:
        raise OutputSchemaError(f"output columns do not match the declared schema "
                                f"{schema.names}: missing {missing}, unexpected {extra}")
    arrays = []
    length = None
    for field in schema:
        try:
            array = pa.array(columns[field.name], type=field.type) if not isinstance(
                columns[field.name], pa.Array | pa.ChunkedArray) else columns[field.name].cast(
                field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise OutputSchemaError(
                f"output column {field.name!r} cannot be {field.type}: {exc}") from exc
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if not field.nullable and array.null_count:
            raise NullValueError(f"output column {field.name!r} is declared not null but has "
                                 f"{array.null_count} null value(s)")
        if length is not None and len(array) != length:
            raise OutputSchemaError(f"output column {field.name!r} has {len(array)} rows, "
                                    f"others have {length}")
        length = len(array)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
