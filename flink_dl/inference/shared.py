"""One operator per ``predict`` call, however many queries read its result.

Flink plans every query of a Table on its own: a Table that three consumers read (a sink,
``join_labels``, ``monitor``) becomes three copies of its plan, each with its own source
scan and its own Python model operator. The model then runs once per consumer, each copy
polls for new versions on its own, and the consumers see one row served by different
versions. ``share_result`` cuts the plan: the Table becomes a DataStream once (one
transformation, which the job graph translates once and fans out) and a Table over that
stream is handed back. Event time survives the cut: the rowtime column is declared again
on the stream's own timestamps and watermarks (``SOURCE_WATERMARK()``), a processing-time
column is computed again. ``FLINK_DL_SHARED_PREDICT=0`` keeps the old plan (a copy per
consumer).

The price: consumers of one stream move at the pace of the slowest. In the real-time loop
the training path is the slowest, so serving no longer runs ahead of it (which is what made
it serve stale versions; docs/online-design.md, "One predict operator per call").
"""

from __future__ import annotations

import logging

from pyflink.datastream import DataStream
from pyflink.java_gateway import get_gateway
from pyflink.table import Schema, StreamTableEnvironment, Table
from pyflink.table.expressions import col

from flink_dl.flink.pyflink_adapter import (
    env_transformations,
    j_env_of_stream,
    resolved_schema,
    table_env_of,
    transformation_of,
    without_time_attribute,
)
from flink_dl.settings import RuntimeSettings

log = logging.getLogger(__name__)


def time_attributes(table: Table) -> tuple[list[str], list[str]]:
    """The Table's event-time (rowtime) and processing-time columns."""
    schema = resolved_schema(table)
    rowtime, proctime = [], []
    for name, data_type in zip(schema.getColumnNames(), schema.getColumnDataTypes(),
                               strict=True):
        summary = data_type.getLogicalType().asSummaryString()
        if "*ROWTIME*" in summary:
            rowtime.append(str(name))
        elif "*PROCTIME*" in summary:
            proctime.append(str(name))
    return rowtime, proctime


def detached_stream(t_env: StreamTableEnvironment, table: Table) -> DataStream:
    """``t_env.to_data_stream(table)`` without its side effect on the environment.

    Flink adds the conversion's transformation to the environment's list at once, so a
    branch that only Table jobs read (``to_pandas``, ``execute_insert``) would run again,
    sink-less, in the environment's next ``execute``: the model and its source a second
    time, or forever with an unbounded source. Taken off the list, it still runs in every
    job that reads it (a job reaches it as the input of what reads it)."""
    stream = t_env.to_data_stream(table)
    env_transformations(j_env_of_stream(stream)).remove(transformation_of(stream))
    return stream


def share_result(table: Table, where: str) -> Table:
    """``table`` as a Table over one DataStream: every query of the result reads the same
    operators (the plan above is translated once). A table that cannot be cut (no stream
    table environment, several event-time columns, an updating table) comes back as it
    is, with a warning naming ``where``."""
    t_env = table_env_of(table)
    if not RuntimeSettings.from_env().shared_predict:
        return table
    if not isinstance(t_env, StreamTableEnvironment):
        log.warning("%s: not a StreamTableEnvironment; each query of the result plans its "
                    "own copy of the model operator", where)
        return table
    rowtime, proctime = time_attributes(table)
    if len(rowtime) > 1:
        log.warning("%s: the input has several event-time columns %s; each query of the "
                    "result plans its own copy of the model operator", where, rowtime)
        return table
    schema = resolved_schema(table)
    names = [str(n) for n in schema.getColumnNames()]
    physical = [n for n in names if n not in proctime]
    try:
        stream = detached_stream(t_env, table.select(*[col(n) for n in physical])
                                 if proctime else table)
    except Exception as exc:  # e.g. an updating (changelog) input
        log.warning("%s: the result cannot become one stream (%s); each query of it plans "
                    "its own copy of the model operator", where,
                    str(exc).splitlines()[0][:300])
        return table
    builder = get_gateway().jvm.org.apache.flink.table.api.Schema.newBuilder()
    for name, data_type in zip(names, schema.getColumnDataTypes(), strict=True):
        if name in proctime:
            builder.columnByExpression(name, "PROCTIME()")
        else:
            builder.column(name, without_time_attribute(data_type))
    if rowtime:
        builder.watermark(rowtime[0], "SOURCE_WATERMARK()")
    return t_env.from_data_stream(stream, Schema(builder.build()))
