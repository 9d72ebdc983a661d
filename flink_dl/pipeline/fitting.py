"""Fitting feature estimators with as few Flink jobs as their dependencies allow.

Each estimator names the aggregates it needs (``StatQuery``); the aggregates of every
estimator in a group run as one ``UNION ALL`` query, i.e. one Flink job
(``flink_dl.pipeline.statistics``), and their rows come back as the aggregates' final
values. ``Pipeline.fit`` groups consecutive estimators that do not read each other's
outputs.

May import: ``flink_dl.pipeline.api``, ``flink_dl.pipeline.sql``,
``flink_dl.pipeline.statistics`` (not the stages: they call in here).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from pyflink.table import Table

from flink_dl.pipeline.api import Model
from flink_dl.pipeline.sql import Column, columns_of, string_literal
from flink_dl.pipeline.statistics import StatQuery, StatRows, collect_statistics

log = logging.getLogger(__name__)


class StatisticsEstimator(Protocol):
    """What fitting needs of an estimator (``stages.base.FeatureEstimator`` has it)."""

    def check_input(self, columns: Mapping[str, Column]) -> None:
        """Raise unless the input columns suit the estimator."""

    def statistics(self, columns: Mapping[str, Column]) -> list[StatQuery]:
        """The aggregates to compute over ``__THIS__``."""

    def model_from(self, stats: Mapping[str, StatRows]) -> Model:
        """The fitted model from the aggregates' rows (by ``StatQuery.name``)."""


def fit_feature_estimators(table: Table, estimators: Sequence[StatisticsEstimator]
                           ) -> list[Model]:
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
        values = collect_statistics(table, " UNION ALL ".join(parts))
        for (tag, key), value in values.items():
            index, name = tag.split("\x1f", 1)
            stats[int(index)].setdefault(name, []).append((key, value))
        log.info("fitted %s in one Flink job (%d statistics, %.1f s)",
                 ", ".join(type(e).__name__ for e in estimators), len(parts),
                 time.monotonic() - started)
    return [estimator.model_from(stats[i]) for i, estimator in enumerate(estimators)]
