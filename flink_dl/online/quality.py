"""``monitor``: a model's quality and its inputs' drift, per version and event-time window,
as a Flink SQL job (nothing per row in Python).

For every tumbling window and model version: ``rows``, ``labelled``, ``accuracy`` and
``log_loss`` over the labelled rows, ``auc`` (from a histogram of the scores in
``auc_bins`` bins: ties within a bin count one half), and for each feature with a reference
histogram, ``psi_<feature>`` (population stability index) and ``ks_<feature>``
(Kolmogorov-Smirnov distance between the window's and the reference's distribution, at the
reference's bin edges). ``reference_histograms`` computes the reference on the training
table. ``alerts`` turns threshold rules into alert rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from typing import Any

from pyflink.table import Table

from flink_dl.errors import ConfigError, MissingColumnError
from flink_dl.online.labels import duration_seconds, event_time_column
from flink_dl.pipeline.sql import (
    as_double,
    columns_of,
    double_literal,
    interval_literal,
    quote,
    string_literal,
)

#: Keeps the logarithms of PSI and log-loss finite.
EPSILON = 1e-6


@dataclass(frozen=True)
class Histogram:
    """A feature's reference distribution: inner bin edges and the share of rows in each
    of the ``len(edges) + 1`` bins."""

    edges: list[float]
    shares: list[float]

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.edges) + 1:
            raise ConfigError(f"Histogram: {len(self.shares)} shares for {len(self.edges)} "
                              "edges (one more share than edges)")


def reference_histograms(table: Table, features: Sequence[str], bins: int = 10
                         ) -> dict[str, Histogram]:
    """Decile-like histograms of ``features`` on a bounded table (one Flink job)."""
    from flink_dl.pipeline.fitting import _collect
    from flink_dl.pipeline.sql import is_missing
    from flink_dl.pipeline.stages.base import StatQuery, quantiles

    columns = columns_of(table)
    probabilities = [i / bins for i in range(1, bins)]
    parts = []
    for name in features:
        if name not in columns:
            raise MissingColumnError(f"reference_histograms: column {name!r} is not in the "
                                     f"table; it has {list(columns)}")
        query: StatQuery = quantiles(name, as_double(name), probabilities,
                                     f"NOT {is_missing(columns[name])}")
        sql = query.sql.replace("__THIS__", str(table))
        parts.append(f"SELECT {string_literal(name)} AS s, k, v FROM ({sql})")
    values = _collect(table, " UNION ALL ".join(parts))
    edges = {name: sorted({v for (s, _), v in values.items() if s == name and v is not None})
             for name in features}
    shares = _bin_shares(table, edges)
    return {name: Histogram(edges[name], shares[name]) for name in features}


def _bin_shares(table: Table, edges: Mapping[str, list[float]]) -> dict[str, list[float]]:
    from flink_dl.pipeline.fitting import _collect

    parts = []
    for name, inner in edges.items():
        for index, condition in enumerate(_bin_conditions(name, inner)):
            parts.append(f"SELECT {string_literal(name)} AS s, '{index}' AS k, "
                         f"CAST(AVG(CASE WHEN "
                         f"{condition} THEN 1.0E0 ELSE 0.0E0 END) AS DOUBLE) AS v FROM "
                         f"{table} WHERE {quote(name)} IS NOT NULL")
    values = _collect(table, " UNION ALL ".join(parts))
    return {name: [float(values.get((name, str(i))) or 0.0) for i in range(len(inner) + 1)]
            for name, inner in edges.items()}


def _bin_conditions(name: str, edges: Sequence[float]) -> list[str]:
    x = as_double(name)
    bounds = [None, *edges, None]
    out = []
    for low, high in pairwise(bounds):
        parts = []
        if low is not None:
            parts.append(f"{x} >= {double_literal(low)}")
        if high is not None:
            parts.append(f"{x} < {double_literal(high)}")
        out.append(" AND ".join(parts) or "TRUE")
    return out


def monitor(samples: Table, *, label: str, score: str, window: float | timedelta = 60.0,
            version: str = "pipeline_version", time: str | None = None,
            threshold: float = 0.5, reference: Mapping[str, Histogram] | None = None,
            auc_bins: int = 50, metrics: bool = True) -> Table:
    """Windowed quality and drift per model version (see the module's docstring).
    ``score`` is the predicted probability of the positive class; ``label`` is 0/1 (NULL
    for unlabelled rows, which count in ``rows`` only). ``metrics``: also report the
    newest window as Flink metrics (``flink_dl.online.gauges``)."""
    columns = columns_of(samples)
    wanted = [label, score, version, *(reference or {})]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise MissingColumnError(f"monitor: column(s) {missing} are not in the samples; they "
                                 f"have {list(columns)}")
    if not isinstance(auc_bins, int) or auc_bins < 2:
        raise ConfigError(f"monitor: auc_bins must be an integer >= 2, got {auc_bins!r}")
    ts = event_time_column(samples, time, "samples")
    seconds = duration_seconds("monitor: window", window)
    y, p = quote(label), as_double(score)
    inner = ["COUNT(*) AS `rows`", f"COUNT({y}) AS labelled",
             f"AVG(CASE WHEN {y} IS NULL THEN CAST(NULL AS DOUBLE) WHEN ({p} >= "
             f"{double_literal(threshold)}) = ({y} = 1) THEN 1.0E0 ELSE 0.0E0 END) AS accuracy",
             f"AVG(CASE WHEN {y} IS NULL THEN CAST(NULL AS DOUBLE) WHEN {y} = 1 THEN "
             f"-LN(GREATEST({p}, {double_literal(EPSILON)})) ELSE -LN(GREATEST(1 - {p}, "
             f"{double_literal(EPSILON)})) END) AS log_loss"]
    for index in range(auc_bins):
        low, high = index / auc_bins, (index + 1) / auc_bins
        in_bin = f"{p} >= {double_literal(low)}" if index else "TRUE"
        if index < auc_bins - 1:
            in_bin += f" AND {p} < {double_literal(high)}"
        for cls, value in (("pos", 1), ("neg", 0)):
            inner.append(f"SUM(CASE WHEN {y} = {value} AND {in_bin} THEN 1.0E0 ELSE 0.0E0 "
                         f"END) AS {cls}{index}")
    for name, histogram in (reference or {}).items():
        for index, condition in enumerate(_bin_conditions(name, histogram.edges)):
            inner.append(f"AVG(CASE WHEN {quote(name)} IS NULL THEN CAST(NULL AS DOUBLE) WHEN "
                         f"{condition} THEN 1.0E0 ELSE 0.0E0 END) AS {_bin(name, index)}")
    grouped = (f"SELECT window_start, window_end, {quote(version)} AS version, "
               f"{', '.join(inner)} FROM TABLE(TUMBLE(TABLE {samples}, DESCRIPTOR({quote(ts)}),"
               f" {interval_literal(seconds)})) "
               f"GROUP BY window_start, window_end, {quote(version)}")
    outer = ["window_start", "window_end", "version", "`rows`", "labelled", "accuracy",
             "log_loss", f"{_auc(auc_bins)} AS auc"]
    for name, histogram in (reference or {}).items():
        outer.append(f"{_psi(name, histogram)} AS {quote('psi_' + name)}")
        outer.append(f"{_ks(name, histogram)} AS {quote('ks_' + name)}")
    result = samples._t_env.sql_query(f"SELECT {', '.join(outer)} FROM ({grouped})")
    return _with_gauges(result, list(reference or {})) if metrics else result


def _with_gauges(result: Table, features: Sequence[str]) -> Table:
    """``result`` with its ``version`` column passed through the ``QualityGauges`` UDF."""
    from pyflink.table import DataTypes
    from pyflink.table.expressions import call_sql, col, lit
    from pyflink.table.udf import udf

    from flink_dl.online.gauges import QualityGauges

    gauges = udf(QualityGauges(), result_type=DataTypes.INT())

    def largest(prefix: str) -> Any:
        names = [quote(f"{prefix}_{name}") for name in features]
        if not names:
            return lit(None, DataTypes.DOUBLE())
        return call_sql(names[0] if len(names) == 1 else f"GREATEST({', '.join(names)})")

    version = gauges(col("version"), col("rows"), col("accuracy"), col("log_loss"),
                     col("auc"), largest("psi"), largest("ks"))
    names = columns_of(result)
    return result.select(*[version.alias("version") if n == "version" else col(n)
                           for n in names])


def _bin(name: str, index: int) -> str:
    return quote(f"bin_{name}_{index}")


def _auc(bins: int) -> str:
    """Mann-Whitney AUC from per-bin counts: P(score of a positive > a negative's), ties
    within a bin one half; NULL without both classes."""
    below = []
    terms = []
    for index in range(bins):
        negatives_below = " + ".join(below) or "0.0E0"
        terms.append(f"pos{index} * ({negatives_below} + 0.5E0 * neg{index})")
        below.append(f"neg{index}")
    positives = " + ".join(f"pos{i}" for i in range(bins))
    negatives = " + ".join(below)
    return (f"CASE WHEN ({positives}) * ({negatives}) = 0 THEN CAST(NULL AS DOUBLE) ELSE "
            f"({' + '.join(terms)}) / (({positives}) * ({negatives})) END")


def _psi(name: str, histogram: Histogram) -> str:
    eps = double_literal(EPSILON)
    terms = []
    for index, expected in enumerate(histogram.shares):
        actual = f"COALESCE({_bin(name, index)}, 0.0E0)"
        e = double_literal(expected)
        terms.append(f"({actual} - {e}) * LN(({actual} + {eps}) / ({e} + {eps}))")
    return " + ".join(terms)


def _ks(name: str, histogram: Histogram) -> str:
    cumulative_actual, cumulative_expected, gaps = [], 0.0, []
    for index, expected in enumerate(histogram.shares[:-1]):
        cumulative_actual.append(f"COALESCE({_bin(name, index)}, 0.0E0)")
        cumulative_expected += expected
        gaps.append(f"ABS({' + '.join(cumulative_actual)} - "
                    f"{double_literal(cumulative_expected)})")
    return f"GREATEST({', '.join(gaps)})" if len(gaps) > 1 else (gaps[0] if gaps else "0.0E0")


@dataclass(frozen=True)
class Rule:
    """An alert when ``metric`` ``op`` ``threshold`` (e.g. ``Rule("accuracy", "<", 0.8)``)."""

    metric: str
    op: str
    threshold: float

    def sql(self) -> str:
        if self.op not in ("<", "<=", ">", ">="):
            raise ConfigError(f"Rule: op must be one of <, <=, >, >=; got {self.op!r}")
        return f"{quote(self.metric)} {self.op} {double_literal(self.threshold)}"


def alerts(metrics: Table, rules: Sequence[Rule]) -> Table:
    """One row per window, version and broken rule: ``window_end``, ``version``, ``rule``,
    ``value``."""
    if not rules:
        raise ConfigError("alerts: give at least one Rule")
    columns = columns_of(metrics)
    parts = []
    for rule in rules:
        if rule.metric not in columns:
            raise MissingColumnError(f"alerts: metric {rule.metric!r} is not a column of the "
                                     f"metrics; they have {list(columns)}")
        text = f"{rule.metric} {rule.op} {rule.threshold}".replace("'", "''")
        parts.append(f"SELECT window_end, version, '{text}' AS rule, "
                     f"CAST({quote(rule.metric)} AS DOUBLE) AS `value` FROM {metrics} "
                     f"WHERE {rule.sql()}")
    return metrics._t_env.sql_query(" UNION ALL ".join(parts))
