"""Getting rows out of a running job: ``write_files`` and ``read_files``.

``write_files(table_or_stream, directory)`` adds to the environment's next job (the one
``env.execute`` / ``env.execute_async`` / ``flink_dl.execute`` starts, beside its ML
clusters and other sinks) an operator that appends every row to a CSV or JSON-lines file
per subtask in ``directory``, one Arrow batch at a time, and flushes each batch: rows can
be read as soon as the batch that holds them is done (about a second, Flink's Python bundle
time), with or without checkpointing, bounded or not. ``read_files(directory)`` reads what
has landed so far, with the column names, as a pandas DataFrame; call it again to follow a
running job, or ``count_rows(directory)`` to wait for rows.

Flink's own ``filesystem`` connector (an ``INSERT`` into a table of it) is the choice where
it fits: in a bounded job, or a streaming job with checkpointing, it commits its part files
at the end or at each checkpoint (exactly once); without checkpoints a streaming job's
files stay hidden in progress. ``write_files`` needs no checkpoints and gives at least once
(a restarted job appends again).
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from pyflink.common.typeinfo import RowTypeInfo
from pyflink.datastream import DataStream
from pyflink.table import DataTypes, Schema, StreamTableEnvironment, Table, TableDescriptor
from pyflink.table.expressions import col
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from flink_dl.errors import ConfigError
from flink_dl.flink.pyflink_adapter import (
    env_of_stream,
    resolved_schema,
    table_env_of,
    without_time_attribute,
)

log = logging.getLogger(__name__)

FORMATS = ("csv", "json")
#: The column names and Flink types ``write_files`` writes (a name starting with ``_``,
#: which Flink's filesystem source skips).
COLUMNS_FILE = "_flink_dl_columns.json"
_COUNT = "__flink_dl_written"

_FILES: dict[str, IO[str]] = {}
_FILES_LOCK = threading.Lock()


def write_files(data: Table | DataStream, directory: str | os.PathLike[str], *,
                format: str = "csv") -> Path:
    """Append every row of ``data`` (a Table, or a DataStream of named rows) to files in
    ``directory``, as part of the environment's next job; returns the directory (created).
    One directory per call: each subtask writes ``part-<subtask>.<format>`` there.

    Args:
        format: ``"csv"`` (no header: ``read_files`` names the columns) or ``"json"`` (one
            object per line).

    Raises:
        ConfigError: an unknown format, a DataStream without named rows, or a Table of an
            environment that is not a ``StreamTableEnvironment``.
    """
    if format not in FORMATS:
        raise ConfigError(f"write_files: format must be one of {list(FORMATS)}, got {format!r}")
    table = _as_table(data)
    t_env = table_env_of(table)
    if not isinstance(t_env, StreamTableEnvironment):
        raise ConfigError("write_files: the Table must come from a StreamTableEnvironment (the "
                          "rows are written by the StreamExecutionEnvironment's next job)")
    path = Path(directory).absolute()
    path.mkdir(parents=True, exist_ok=True)
    schema = resolved_schema(table)
    names = [str(n) for n in schema.getColumnNames()]
    types = [str(without_time_attribute(t).getLogicalType().asSerializableString())
             for t in schema.getColumnDataTypes()]
    (path / COLUMNS_FILE).write_text(json.dumps(
        {"format": format, "columns": [list(c) for c in zip(names, types, strict=True)]}))
    writer = udf(AppendBatches(str(path), format, names), result_type=DataTypes.INT(),
                 func_type="pandas")
    written = table.select(writer(*[col(n) for n in names]).alias(_COUNT)) \
        .where(col(_COUNT) < 0)  # nothing leaves the writer
    sink = TableDescriptor.for_connector("blackhole") \
        .schema(Schema.new_builder().column(_COUNT, DataTypes.INT()).build()).build()
    statements = t_env.create_statement_set()
    statements.add_insert(sink, written)
    statements.attach_as_datastream()
    log.info("write_files: %s rows of (%s) to %s", format, ", ".join(names), path)
    return path


class AppendBatches(ScalarFunction):
    """Pandas UDF: appends each Arrow batch of rows to this subtask's file and flushes it;
    returns 0 per row. Not deterministic: the planner must keep every call."""

    def __init__(self, directory: str, format: str, names: list[str]) -> None:
        self.directory = directory
        self.format = format
        self.names = names

    def is_deterministic(self) -> bool:
        return False

    def open(self, function_context: FunctionContext) -> None:
        name = f"part-{function_context.get_index_of_this_subtask()}.{self.format}"
        path = os.path.join(self.directory, name)
        with _FILES_LOCK:  # one handle per file and process, whichever instance writes
            cached = _FILES.get(path)
            if cached is None or not _same_file(cached, path):  # new, or removed since
                if cached is not None:
                    cached.close()
                _FILES[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._file = _FILES[path]

    def eval(self, *columns: pd.Series) -> pd.Series:
        frame = pd.DataFrame(dict(zip(self.names, columns, strict=True)))
        if self.format == "json":
            text = frame.to_json(orient="records", lines=True, date_format="iso")
            text = text if text.endswith("\n") or not text else text + "\n"
        else:
            text = frame.to_csv(header=False, index=False)
        with _FILES_LOCK:
            self._file.write(text)  # whole lines, then flushed: readers see whole batches
            self._file.flush()
        return pd.Series(np.zeros(len(frame), dtype=np.int32))


def _same_file(handle: Any, path: str) -> bool:
    """Whether the open ``handle`` still is the file at ``path`` (a directory removed and
    made again by a second run of the same process holds a new file)."""
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except (OSError, ValueError):
        return False


def read_files(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """The rows ``write_files`` has written to ``directory`` so far, with its column names
    (timestamps parsed); an empty DataFrame with those columns when none has landed."""
    path = Path(directory)
    try:
        info = json.loads((path / COLUMNS_FILE).read_text())
    except FileNotFoundError:
        raise ConfigError(f"read_files: {path} has no {COLUMNS_FILE}: not a directory that "
                          "flink_dl.files.write_files writes") from None
    names = [name for name, _ in info["columns"]]
    frames = []
    for part in sorted(path.glob(f"part-*.{info['format']}")):
        text = part.read_text(encoding="utf-8")
        text = text[:text.rfind("\n") + 1]  # a batch being written: its whole lines only
        if not text:
            continue
        if info["format"] == "json":
            frames.append(pd.read_json(io.StringIO(text), lines=True, dtype=False))
        else:
            frames.append(pd.read_csv(io.StringIO(text), header=None, names=names))
    if not frames:
        return pd.DataFrame(columns=names)
    frame = pd.concat(frames, ignore_index=True)
    for name, sql_type in info["columns"]:
        if sql_type.startswith("TIMESTAMP") and name in frame:
            frame[name] = pd.to_datetime(frame[name], utc="LOCAL TIME ZONE" in sql_type,
                                         format="ISO8601")
    return frame[names]


def count_rows(directory: str | os.PathLike[str]) -> int:
    """How many rows ``write_files`` has written to ``directory`` so far (whole lines; cheap
    enough to poll while a job runs)."""
    path = Path(directory)
    try:
        suffix = json.loads((path / COLUMNS_FILE).read_text())["format"]
    except FileNotFoundError:
        return 0
    return sum(part.read_bytes().count(b"\n") for part in path.glob(f"part-*.{suffix}"))


def _as_table(data: Any) -> Table:
    if isinstance(data, Table):
        return data
    if isinstance(data, DataStream):
        if not isinstance(data.get_type(), RowTypeInfo):
            raise ConfigError(f"write_files: a DataStream must carry named rows "
                              f"(Types.ROW_NAMED), got {data.get_type()}; map it to rows first")
        return StreamTableEnvironment.create(env_of_stream(data)).from_data_stream(data)
    raise ConfigError(f"write_files: data must be a pyflink Table or DataStream, got "
                      f"{type(data).__name__}")
