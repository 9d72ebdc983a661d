"""``monitor``: a model's quality and its inputs' drift, per version and event-time window,
as a Flink SQL job (nothing per row in Python).

For every tumbling window and model version: ``rows``, ``labelled``, ``late``, ``accuracy``
and ``log_loss`` over the labelled rows, ``auc`` (from a histogram of the scores in
``auc_bins`` bins: ties within a bin count one half), and for each feature of the
reference, ``psi_<feature>`` (population stability index) and ``ks_<feature>``
(Kolmogorov-Smirnov distance between the window's and the reference's distribution, at the
reference's bin edges). The reference is the one a fitted pipeline saved for its served
features (``reference=pipeline_dir``), or ``reference_histograms`` of a table.

No row is dropped for being late: a row that arrives after the watermark has passed the
end of its window is counted in the window open when it arrives, in ``late`` only (not in
``rows`` or the metrics), so the ``rows`` and ``late`` of all windows add up to the input.
``alerts`` turns threshold rules into alert rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyflink.table import Table

from flink_dl.errors import ConfigError, MissingColumnError, ReferenceMismatchError
from flink_dl.flink.pyflink_adapter import table_env_of
from flink_dl.online.labels import duration_seconds, event_time_column
from flink_dl.pipeline.reference import (
    RAW,
    SERVED,
    Histogram,
    Reference,
    bin_conditions,
    reference_histograms,
    served_by,
    written_columns,
)
from flink_dl.pipeline.sql import (
    as_double,
    columns_of,
    double_literal,
    interval_literal,
    is_missing,
    quote,
)

__all__ = ["EPSILON", "Histogram", "Reference", "Rule", "alerts", "monitor",
           "reference_histograms"]

log = logging.getLogger(__name__)

#: Added to both shares in PSI's logarithm (an empty bin would make it infinite), and the
#: floor of the probabilities in log-loss.
EPSILON = 1e-6

#: The columns ``monitor`` adds to carry a row's own event time and the time it is
#: windowed at (later than the watermark when the row came late).
_EVENT, _AT = "__flink_dl_event_time", "__flink_dl_window_time"

if TYPE_CHECKING:
    from flink_dl.pipeline.pipeline import PipelineModel

    ReferenceLike = (Reference | Mapping[str, Histogram] | str | os.PathLike[str]
                     | PipelineModel | None)


def monitor(samples: Table, *, label: str, score: str, window: float | timedelta = 60.0,
            version: str = "pipeline_version", time: str | None = None,
            threshold: float = 0.5, reference: ReferenceLike = None,
            auc_bins: int = 50, min_drift_rows: int = 50, metrics: bool = True) -> Table:
    """Windowed quality and drift per model version (see the module's docstring).

    Args:
        samples: rows with an event-time attribute (``time``, default: the only one), the
            ``version`` column (``predict`` adds ``pipeline_version``), ``label`` (0/1, NULL
            for unlabelled rows, which count in ``rows`` only) and ``score`` (the predicted
            probability of the positive class).
        reference: what drift is measured against: a pipeline directory (or a version's
            directory, or a ``PipelineModel``): the histograms of the served features that
            the pipeline saved when it was fitted; or a ``Reference`` /
            ``{column: Histogram}``. Refused (``ReferenceMismatchError``) when a column is
            missing from the samples, or when its space is not the samples' (a raw-input
            reference of a column the serving pipeline transforms, or another pipeline's).
        min_drift_rows: ``psi_``/``ks_`` of a feature are NULL in a group (version and
            window) with fewer on-time values of it: a handful of rows, e.g. the first rows
            of a version that was swapped in just before the window ended, says nothing
            about drift (one row gives PSI ≈ 12 against deciles).
        metrics: also report the newest window as Flink metrics (``flink_dl.online.gauges``).
    """
    columns = columns_of(samples)
    missing = [c for c in (label, score, version) if c not in columns]
    if missing:
        raise MissingColumnError(f"monitor: column(s) {missing} are not in the samples; they "
                                 f"have {list(columns)}"
                                 + (" (predict adds pipeline_version)"
                                    if version in missing else ""))
    if not isinstance(auc_bins, int) or auc_bins < 2:
        raise ConfigError(f"monitor: auc_bins must be an integer >= 2, got {auc_bins!r}")
    if not isinstance(min_drift_rows, int) or isinstance(min_drift_rows, bool) \
            or min_drift_rows < 1:
        raise ConfigError(f"monitor: min_drift_rows must be an integer >= 1, got "
                          f"{min_drift_rows!r}")
    ts = event_time_column(samples, time, "samples", keyword="time", where="monitor")
    seconds = duration_seconds("monitor: window", window)
    ref = resolve_reference(reference)
    if ref is not None:
        check_reference(ref, samples)
    features = list(ref or {})
    timed = _late_rows_retimed(samples, ts, [label, score, version, *features])
    ok = "__flink_dl_on_time"
    y, p = quote(label), as_double(score)

    def on_time(aggregate: str, value: str) -> str:
        return f"{aggregate}({value}) FILTER (WHERE {ok})"

    inner = [f"{on_time('COUNT', '*')} AS `rows`", f"{on_time('COUNT', y)} AS labelled",
             f"COUNT(*) FILTER (WHERE NOT {ok}) AS late",
             on_time("AVG", f"CASE WHEN {y} IS NULL THEN CAST(NULL AS DOUBLE) WHEN ({p} >= "
                            f"{double_literal(threshold)}) = ({y} = 1) THEN 1.0E0 ELSE "
                            "0.0E0 END") + " AS accuracy",
             on_time("AVG", f"CASE WHEN {y} IS NULL THEN CAST(NULL AS DOUBLE) WHEN {y} = 1 "
                            f"THEN -LN(GREATEST({p}, {double_literal(EPSILON)})) ELSE "
                            f"-LN(GREATEST(1 - {p}, {double_literal(EPSILON)})) END")
             + " AS log_loss"]
    for index in range(auc_bins):
        low, high = index / auc_bins, (index + 1) / auc_bins
        in_bin = f"{p} >= {double_literal(low)}" if index else "TRUE"
        if index < auc_bins - 1:
            in_bin += f" AND {p} < {double_literal(high)}"
        for cls, value in (("pos", 1), ("neg", 0)):
            inner.append(on_time("SUM", f"CASE WHEN {y} = {value} AND {in_bin} THEN 1.0E0 "
                                        "ELSE 0.0E0 END") + f" AS {cls}{index}")
    kept = columns_of(timed)
    for name in features:
        absent = is_missing(kept[name])
        inner.append(f"COUNT(*) FILTER (WHERE {ok} AND NOT {absent}) AS {_count(name)}")
        for index, condition in enumerate(bin_conditions(name, ref[name].edges)):
            inner.append(on_time("AVG", f"CASE WHEN {absent} THEN CAST(NULL AS DOUBLE) WHEN "
                                        f"{condition} THEN 1.0E0 ELSE 0.0E0 END")
                         + f" AS {_bin(name, index)}")
    windowed = (f"SELECT *, {quote(_EVENT)} >= window_start AS {ok} FROM TABLE(TUMBLE("
                f"TABLE {timed}, DESCRIPTOR({quote(_AT)}), {interval_literal(seconds)}))")
    grouped = (f"SELECT window_start, window_end, {quote(version)} AS version, "
               f"{', '.join(inner)} FROM ({windowed}) "
               f"GROUP BY window_start, window_end, {quote(version)}")
    outer = ["window_start", "window_end", "version", "`rows`", "labelled", "late",
             "accuracy", "log_loss", f"{_auc(auc_bins)} AS auc"]
    for name in features:
        present = f"{_count(name)} >= {min_drift_rows}"
        outer.append(f"CASE WHEN {present} THEN {_psi(name, ref[name])} END AS "
                     f"{quote('psi_' + name)}")
        outer.append(f"CASE WHEN {present} THEN {_ks(name, ref[name])} END AS "
                     f"{quote('ks_' + name)}")
    result = table_env_of(samples).sql_query(f"SELECT {', '.join(outer)} FROM ({grouped})")
    return _with_gauges(result, features) if metrics else result


def _late_rows_retimed(samples: Table, ts: str, needed: Sequence[str]) -> Table:
    """``needed`` columns of ``samples``, their event time as ``_EVENT`` and a new event-time
    attribute ``_AT``: the row's own time, or, for a row that came behind the watermark, the
    watermark plus 1 ms. No ``_AT`` is behind the watermark, so a window operator drops
    none: a late row lands in the window open when it came (Flink SQL cannot send late rows
    to a side output, and ``CURRENT_WATERMARK`` is the current operator's, which the window
    operator downstream never passes).

    The new attribute needs a round trip through a DataStream (the JVM's converters, no
    Python): only a source declares event time, and ``SOURCE_WATERMARK()`` keeps the
    stream's watermarks."""
    from pyflink.table import Schema, StreamTableEnvironment

    t_env = table_env_of(samples)
    if not isinstance(t_env, StreamTableEnvironment):
        raise ConfigError("monitor: the samples must come from a StreamTableEnvironment "
                          "(StreamTableEnvironment.create(env))")
    root = columns_of(samples)[ts].root
    kind = "TIMESTAMP_LTZ(3)" if root == "TIMESTAMP_WITH_LOCAL_TIME_ZONE" else "TIMESTAMP(3)"
    t, watermark = quote(ts), f"CURRENT_WATERMARK({quote(ts)})"
    names = list(dict.fromkeys(needed))
    stamped = t_env.sql_query(
        f"SELECT {', '.join(quote(n) for n in names)}, CAST({t} AS TIMESTAMP(3)) AS "
        f"{quote(_EVENT)}, CAST(CASE WHEN {watermark} IS NULL OR {t} > {watermark} THEN {t} "
        f"ELSE {watermark} + INTERVAL '0.001' SECOND END AS {kind}) AS {quote(_AT)} "
        f"FROM {samples}")
    schema = Schema.new_builder().watermark(_AT, "SOURCE_WATERMARK()").build()
    from flink_dl.inference.shared import detached_stream

    return t_env.from_data_stream(detached_stream(t_env, stamped), schema)


def resolve_reference(reference: ReferenceLike) -> Reference | None:
    """``monitor``'s ``reference`` as a ``Reference`` (a pipeline's saved one, read from
    its directory or ``PipelineModel``)."""
    from flink_dl.pipeline.pipeline import PipelineModel, saved_reference

    if reference is None or isinstance(reference, Reference):
        return reference
    if isinstance(reference, PipelineModel):
        found = reference.reference
        where = "the PipelineModel"
        if found is not None and reference.version is not None and found.pipeline is None:
            found = Reference(found, found.space, pipeline=_store_of(reference.version.path),
                              version=reference.version.version)
    elif isinstance(reference, str | os.PathLike):
        found, where = saved_reference(reference), f"the pipeline at {reference}"
    elif isinstance(reference, Mapping):
        return Reference(reference)
    else:
        raise ConfigError(f"monitor: reference must be a pipeline directory, a PipelineModel, "
                          f"a Reference or a mapping of Histograms, got "
                          f"{type(reference).__name__}")
    if found is None and _untrained(reference):
        raise ConfigError(f"monitor: {where} is an untrained start (Pipeline.untrained): "
                          "nothing was fitted that drift could be measured against; leave "
                          "out reference=, or pass reference_histograms(table, columns)")
    if found is None:
        raise ConfigError(f"monitor: {where} has no saved reference histograms (saved by an "
                          "older flink-dl, or fitted with Pipeline(..., reference_bins=None));"
                          " fit and save it again, or pass reference_histograms(table of the "
                          "served features, columns)")
    return found


def _untrained(reference: ReferenceLike) -> bool:
    from flink_dl.pipeline.pipeline import PipelineModel

    if isinstance(reference, PipelineModel):
        return reference.untrained
    return isinstance(reference, str | os.PathLike) and PipelineModel.load(reference).untrained


def _store_of(version_path: str | os.PathLike[str]) -> str:
    return str(Path(version_path).parent.resolve())


def check_reference(reference: Reference, samples: Table) -> None:
    """``ReferenceMismatchError`` when ``reference`` does not fit ``samples``: columns it
    has that they lack, or a space that is not theirs (where the samples' is known)."""
    from flink_dl.pipeline.pipeline import PipelineModel

    columns = columns_of(samples)
    served = served_by(samples)
    missing = [c for c in reference if c not in columns]
    if missing:
        raise ReferenceMismatchError(
            f"monitor: the reference ({reference.describe()}) has column(s) {missing} that "
            f"the samples lack; the samples have {list(columns)}")
    if served is None:
        return  # not known to come from predict: only the columns can be checked
    if reference.space == RAW:
        clash = [c for c in reference
                 if c in written_columns(PipelineModel.load(served).stages)]
        if clash:
            raise ReferenceMismatchError(
                f"monitor: the reference of column(s) {clash} is in the raw input space, but "
                f"the samples carry the served features of pipeline {served}, whose fitted "
                f"stages transform {clash}; pass reference={served!r} (the served features' "
                "reference saved with the pipeline)")
    elif reference.space == SERVED and reference.pipeline is not None \
            and str(Path(reference.pipeline).resolve()) != served:
        raise ReferenceMismatchError(
            f"monitor: the reference is of the {reference.describe()}, but the samples carry "
            f"the served features of pipeline {served}; pass reference={served!r}")


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


def _count(name: str) -> str:
    return quote(f"n_{name}")


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
    return table_env_of(metrics).sql_query(" UNION ALL ".join(parts))
