"""``join_labels``: training samples from serving, with no training/serving skew.

The prediction stream carries the features as the model saw them, a key, an event time and
the model version; the labels arrive later on a stream of their own. An event-time interval
join (Flink's, state kept only for ``within``) pairs each prediction with the label of the
same key whose time lies in ``[prediction time, prediction time + within]``. A prediction
whose label has not come by then is dropped (``unlabelled="drop"``) or emitted once the
watermark passes the bound, with NULL label columns and ``labelled = FALSE``
(``unlabelled="emit"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from pyflink.table import Table

from flink_dl.errors import ConfigError, FeatureTypeError, MissingColumnError
from flink_dl.flink.pyflink_adapter import resolved_schema, table_env_of
from flink_dl.pipeline.reference import mark_served, served_by
from flink_dl.pipeline.sql import (
    NUMERIC_ROOTS,
    STRING_ROOTS,
    Column,
    columns_of,
    interval_literal,
    quote,
)

UNLABELLED = ("drop", "emit")


def event_time_column(table: Table, name: str | None, which: str, *,
                      keyword: str | None = None, where: str = "join_labels") -> str:
    """The Table's event-time (rowtime) attribute, or ``name`` checked to be one; errors
    start with ``where`` and name the argument ``keyword`` that picks the column."""
    keyword = keyword or f"{which}_time"
    schema = resolved_schema(table)
    rowtime = []
    for column, data_type in zip(schema.getColumnNames(), schema.getColumnDataTypes(),
                                 strict=True):
        if "*ROWTIME*" in data_type.getLogicalType().asSummaryString():
            rowtime.append(str(column))
    if name is not None:
        if name not in rowtime:
            raise ConfigError(f"{where}: {which} column {name!r} is not an event-time "
                              f"attribute (event-time columns: {rowtime}); declare it with "
                              f"WATERMARK FOR {name} AS {name} - INTERVAL '1' SECOND")
        return name
    if len(rowtime) != 1:
        raise ConfigError(f"{where}: the {which} table needs exactly one event-time "
                          f"attribute (a column with a WATERMARK), it has {rowtime}; pass "
                          f"{keyword}=... or declare one")
    return rowtime[0]


def duration_seconds(where: str, value: float | timedelta) -> float:
    """Seconds (a number or a ``timedelta``), > 0; ``ConfigError`` naming ``where``."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        raise ConfigError(f"{where} must be a positive duration, got {value!r}")
    return seconds


def join_labels(predictions: Table, labels: Table, *, key: str | Sequence[str],
                within: float | timedelta, unlabelled: str = "drop",
                prediction_time: str | None = None, label_time: str | None = None) -> Table:
    """Predictions joined with the labels that arrive within ``within`` (seconds or a
    ``timedelta``) of them, in event time: the prediction's columns, then the label table's
    columns other than the key and its time, then ``label_time`` (and ``labelled`` with
    ``unlabelled="emit"``)."""
    keys = [key] if isinstance(key, str) else list(key)
    if not keys:
        raise ConfigError("join_labels: key must name at least one column")
    if unlabelled not in UNLABELLED:
        raise ConfigError(f"join_labels: unlabelled must be one of {list(UNLABELLED)}, got "
                          f"{unlabelled!r}")
    seconds = duration_seconds("join_labels: within", within)
    p_cols, l_cols = columns_of(predictions), columns_of(labels)
    for which, cols in (("predictions", p_cols), ("labels", l_cols)):
        missing = [k for k in keys if k not in cols]
        if missing:
            raise MissingColumnError(f"join_labels: key column(s) {missing} are not in the "
                                     f"{which} table; it has {list(cols)}")
    check_key_types(keys, p_cols, l_cols)
    p_time = event_time_column(predictions, prediction_time, "predictions",
                               keyword="prediction_time")
    l_time = event_time_column(labels, label_time, "labels", keyword="label_time")
    carried = [c for c in l_cols if c not in keys and c != l_time]
    clash = [c for c in carried if c in p_cols] + \
        [c for c in ("label_time", "labelled") if c in p_cols]
    if clash:
        raise ConfigError(f"join_labels: label column(s) {clash} also exist in the "
                          "predictions; rename them on one side")
    on = " AND ".join(f"p.{quote(k)} = l.{quote(k)}" for k in keys)
    select = [f"p.{quote(c)}" for c in p_cols] + [f"l.{quote(c)}" for c in carried]
    select.append(f"CAST(l.{quote(l_time)} AS TIMESTAMP(3)) AS label_time")
    join = "JOIN"
    if unlabelled == "emit":
        join = "LEFT JOIN"
        select.append(f"l.{quote(l_time)} IS NOT NULL AS labelled")
    sql = (f"SELECT {', '.join(select)} FROM {predictions} AS p {join} {labels} AS l "
           f"ON {on} AND l.{quote(l_time)} BETWEEN p.{quote(p_time)} AND "
           f"p.{quote(p_time)} + {interval_literal(seconds)}")
    return mark_served(table_env_of(predictions).sql_query(sql), served_by(predictions))


#: Key type roots that compare with each other (Flink widens numbers, and compares CHAR
#: with VARCHAR); any other root must be the same on both sides.
_KEY_FAMILIES = {"numeric": NUMERIC_ROOTS, "character string": STRING_ROOTS}


def check_key_types(keys: Sequence[str], p_cols: Mapping[str, Column],
                    l_cols: Mapping[str, Column]) -> None:
    """``FeatureTypeError`` naming the key and both types when a key's types cannot be
    compared (BIGINT vs STRING); numeric widening and string lengths are fine."""
    for key in keys:
        ours, theirs = p_cols[key], l_cols[key]
        if ours.root == theirs.root or any(ours.root in roots and theirs.root in roots
                                           for roots in _KEY_FAMILIES.values()):
            continue
        raise FeatureTypeError(
            f"join_labels: key {key!r} is {ours.type} in the predictions and {theirs.type} "
            "in the labels; the key's types must compare (numbers with numbers, strings "
            "with strings): CAST one side to the other's type, e.g. "
            f"CAST({quote(key)} AS {ours.type.split()[0]}) in the labels")
