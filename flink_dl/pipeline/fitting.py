"""Fitting feature estimators with as few Flink jobs as their dependencies allow.

Each estimator names the aggregates it needs (``StatQuery``); the aggregates of every
estimator in a group run as one ``UNION ALL`` query, i.e. one Flink job, and their rows come
back as the aggregates' final values. ``Pipeline.fit`` groups consecutive estimators that
do not read each other's outputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from pyflink.table import Table

from flink_dl.flink.failures import translate_errors
from flink_dl.pipeline.sql import columns_of, string_literal
from flink_dl.pipeline.stages.base import FeatureEstimator, FeatureModel, StatRows

log = logging.getLogger(__name__)


def fit_feature_estimators(table: Table, estimators: Sequence[FeatureEstimator]
                           ) -> list[FeatureModel]:
    """Fit ``estimators`` on the same input ``table`` in one Flink job."""
    columns = columns_of(table)
    parts = []
    for index, estimator in enumerate(estimators):
        estimator.check_input(columns)
        for query in estimator.statistics(columns):
            tag = string_literal(f"{index}\x1f{query.name}")
            sql = query.sql.replace("__THIS__", str(table))
            parts.append(f"SELECT {tag} AS s, k, v FROM ({sql})")
    stats: list[dict[str, StatRows]] = [{} for _ in estimators]
    if parts:
        started = time.monotonic()
        values = _collect(table, " UNION ALL ".join(parts))
        for (tag, key), value in values.items():
            index, name = tag.split("\x1f", 1)
            stats[int(index)].setdefault(name, []).append((key, value))
        log.info("fitted %s in one Flink job (%d statistics, %.1f s)",
                 ", ".join(type(e).__name__ for e in estimators), len(parts),
                 time.monotonic() - started)
    return [estimator.model_from(stats[i]) for i, estimator in enumerate(estimators)]


def _collect(table: Table, sql: str) -> dict[tuple[str, str | None], float | None]:
    """Run ``sql``; the final value per (statistic, key). ``to_pandas`` materialises the
    aggregates' changelog in the JVM and moves the result as Arrow (iterating the changelog
    row by row through py4j took minutes for a few thousand input rows)."""
    import math

    with translate_errors():
        frame = table._t_env.sql_query(sql).to_pandas()
    values: dict[tuple[str, str | None], float | None] = {}
    for tag, key, value in frame.itertuples(index=False, name=None):
        key = None if key is None or (isinstance(key, float) and math.isnan(key)) else key
        value = None if value is None or math.isnan(value) else float(value)
        values[(tag, key)] = value
    return dict(sorted(values.items(), key=lambda item: (item[0][0], item[0][1] or "")))
