"""Aggregate statistics over a Table: the queries feature stages and references need, and
collecting several of them in one Flink job.

A ``StatQuery`` is SQL over ``__THIS__`` yielding columns ``k`` (STRING) and ``v``
(DOUBLE); build it with ``scalar``, ``grouped`` or ``quantiles``. ``collect_statistics``
runs a ``UNION ALL`` of such queries as one job and returns their final values.

May import: ``flink_dl.errors``, ``flink_dl.flink`` (failures, PyFlink adapter),
``flink_dl.pipeline.sql``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyflink.table import Table

from flink_dl.flink.failures import translate_errors
from flink_dl.flink.pyflink_adapter import table_env_of
from flink_dl.pipeline.sql import double_literal

#: One statistic's rows: (key, value); key is None for a plain aggregate.
StatRows = list[tuple[str | None, float | None]]


@dataclass(frozen=True)
class StatQuery:
    """An aggregate a stage needs: ``sql`` reads ``__THIS__`` and yields columns ``k``
    (STRING) and ``v`` (DOUBLE); build it with ``scalar``, ``grouped`` or ``quantiles``."""

    name: str
    sql: str


def scalar(name: str, aggregate: str) -> StatQuery:
    """One value: ``aggregate`` (e.g. ``AVG(x) FILTER (...)``) over the whole input."""
    return StatQuery(name, f"SELECT CAST(NULL AS STRING) AS k, CAST({aggregate} AS DOUBLE) "
                           "AS v FROM __THIS__")


def grouped(name: str, key: str, aggregate: str, where: str) -> StatQuery:
    """One value per distinct ``key`` (as STRING) among rows meeting ``where``."""
    return StatQuery(name, f"SELECT CAST({key} AS STRING) AS k, CAST({aggregate} AS DOUBLE) "
                           f"AS v FROM __THIS__ WHERE {where} GROUP BY CAST({key} AS STRING)")


def quantiles(name: str, value: str, probabilities: list[float], where: str) -> StatQuery:
    """Exact quantiles (Flink's ``PERCENTILE``, linear interpolation as numpy's default) of
    ``value`` over rows meeting ``where``; keys "1".."n" in the order given."""
    array = ", ".join(double_literal(p) for p in probabilities)
    return StatQuery(name, f"SELECT CAST(q.i AS STRING) AS k, q.v AS v FROM (SELECT "
                           f"PERCENTILE({value}, ARRAY[{array}]) FILTER (WHERE {where}) AS a "
                           "FROM __THIS__) CROSS JOIN UNNEST(a) WITH ORDINALITY AS q(v, i)")


#: Aggregates update once per mini-batch instead of once per row while statistics are
#: fitted: a streaming PERCENTILE recomputed per row made fitting quadratic (5,000 rows
#: 10.3 s; with mini-batches 50,000 rows 5.8 s, the same quantiles).
MINI_BATCH = {"table.exec.mini-batch.enabled": "true",
              "table.exec.mini-batch.allow-latency": "1 s",
              "table.exec.mini-batch.size": "100000"}


@contextlib.contextmanager
def _mini_batches(config: Any) -> Iterator[None]:
    """The statistics job's mini-batch settings, the user's own restored afterwards."""
    previous = {key: config.get(key, None) for key in MINI_BATCH}
    for key, value in MINI_BATCH.items():
        config.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            config.set(key, value if value is not None else
                       {"table.exec.mini-batch.enabled": "false",
                        "table.exec.mini-batch.allow-latency": "0 ms",
                        "table.exec.mini-batch.size": "-1"}[key])


def collect_statistics(table: Table, sql: str
                       ) -> dict[tuple[str, str | None], float | None]:
    """Run ``sql`` (columns ``s``, ``k``, ``v``) in ``table``'s environment; the final value
    per (statistic, key). ``to_pandas`` materialises the aggregates' changelog in the JVM
    and moves the result as Arrow (iterating the changelog row by row through py4j took
    minutes for a few thousand input rows)."""
    t_env = table_env_of(table)
    with translate_errors(), _mini_batches(t_env.get_config()):
        frame = t_env.sql_query(sql).to_pandas()
    values: dict[tuple[str, str | None], float | None] = {}
    for tag, key, value in frame.itertuples(index=False, name=None):
        key = None if key is None or (isinstance(key, float) and math.isnan(key)) else key
        value = None if value is None or math.isnan(value) else float(value)
        values[(tag, key)] = value
    return dict(sorted(values.items(), key=lambda item: (item[0][0], item[0][1] or "")))
