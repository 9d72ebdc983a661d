"""Reference histograms for drift: what ``flink_dl.online.monitor`` compares a window with.

A ``Reference`` is one ``Histogram`` per column plus the *space* its values are in: the raw
input (``reference_histograms`` on a table), or the served features of a pipeline (the
columns the model stage reads, after the feature stages), which ``Pipeline.fit`` computes
on the training table and saves with every version. ``monitor`` refuses a reference whose
columns or space do not match its samples.

``predict`` marks the Table it returns with the pipeline directory it serves and
``join_labels`` passes the mark on (``mark_served`` / ``served_by``): this is how
``monitor`` knows that its samples carry served features, not raw ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from pyflink.table import Table

from flink_dl.errors import ConfigError, MissingColumnError
from flink_dl.pipeline.sql import as_double, columns_of, double_literal, string_literal

log = logging.getLogger(__name__)

RAW = "raw input"
SERVED = "served features"


@dataclass(frozen=True)
class Histogram:
    """A feature's reference distribution: inner bin edges and the share of rows in each
    of the ``len(edges) + 1`` bins (bin ``i`` is ``[edges[i-1], edges[i])``)."""

    edges: list[float]
    shares: list[float]

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.edges) + 1:
            raise ConfigError(f"Histogram: {len(self.shares)} shares for {len(self.edges)} "
                              "edges (one more share than edges)")


class Reference(Mapping[str, Histogram]):
    """Column -> ``Histogram``, and the space the values are in: ``RAW`` (the input as it
    comes), ``SERVED`` (the model stage's inputs of ``pipeline``), or ``None`` (not known:
    a plain mapping given by hand; only its columns are checked)."""

    def __init__(self, histograms: Mapping[str, Histogram], space: str | None = None, *,
                 pipeline: str | None = None, version: int | None = None) -> None:
        if space not in (RAW, SERVED, None):
            raise ConfigError(f"Reference: space must be {RAW!r}, {SERVED!r} or None, got "
                              f"{space!r}")
        self.histograms = dict(histograms)
        self.space = space
        self.pipeline = pipeline
        self.version = version

    def __getitem__(self, name: str) -> Histogram:
        return self.histograms[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.histograms)

    def __len__(self) -> int:
        return len(self.histograms)

    def describe(self) -> str:
        """The space in words, for errors: "raw input", "served features of pipeline ..."."""
        if self.space == SERVED:
            where = f" of pipeline {self.pipeline}" if self.pipeline else ""
            version = f" (version {self.version})" if self.version is not None else ""
            return f"{SERVED}{where}{version}"
        return self.space or "an unspecified space"

    def __repr__(self) -> str:
        return f"Reference({list(self.histograms)}, {self.describe()})"

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "columns": {
            name: {"edges": h.edges, "shares": h.shares} for name, h in self.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, pipeline: str | None = None,
                  version: int | None = None) -> Reference:
        histograms = {name: Histogram([float(e) for e in h["edges"]],
                                      [float(s) for s in h["shares"]])
                      for name, h in data["columns"].items()}
        return cls(histograms, data.get("space"), pipeline=pipeline, version=version)


def reference_histograms(table: Table, features: Sequence[str], bins: int = 10
                         ) -> Reference:
    """Decile-like histograms of ``features`` on a bounded table (two Flink jobs), in the
    *raw input* space. For drift of what a pipeline serves, use the reference it saved
    (``monitor(..., reference=pipeline_dir)``)."""
    return Reference(histograms(table, features, bins, "reference_histograms"), RAW)


def histograms(table: Table, features: Sequence[str], bins: int, where: str
               ) -> dict[str, Histogram]:
    """``bins`` quantile bins per feature (edges: the distinct inner quantiles), NULLs and
    NaNs left out: one job for the quantiles, one for the bins' shares."""
    from flink_dl.pipeline.sql import is_missing
    from flink_dl.pipeline.statistics import StatQuery, collect_statistics, quantiles

    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ConfigError(f"{where}: bins must be an integer >= 2, got {bins!r}")
    columns = columns_of(table)
    missing = [name for name in features if name not in columns]
    if missing:
        raise MissingColumnError(f"{where}: column(s) {missing} are not in the table; it has "
                                 f"{list(columns)}")
    if not features:
        return {}
    probabilities = [i / bins for i in range(1, bins)]
    parts = []
    for name in features:
        query: StatQuery = quantiles(name, as_double(name), probabilities,
                                     f"NOT {is_missing(columns[name])}")
        sql = query.sql.replace("__THIS__", str(table))
        parts.append(f"SELECT {string_literal(name)} AS s, k, v FROM ({sql})")
    values = collect_statistics(table, " UNION ALL ".join(parts))
    edges = {name: sorted({v for (s, _), v in values.items() if s == name and v is not None})
             for name in features}
    shares = _bin_shares(table, edges)
    return {name: Histogram(edges[name], shares[name]) for name in features}


def _bin_shares(table: Table, edges: Mapping[str, list[float]]) -> dict[str, list[float]]:
    from flink_dl.pipeline.sql import is_missing
    from flink_dl.pipeline.statistics import collect_statistics

    columns = columns_of(table)
    parts = []
    for name, inner in edges.items():
        for index, condition in enumerate(bin_conditions(name, inner)):
            parts.append(f"SELECT {string_literal(name)} AS s, '{index}' AS k, "
                         f"CAST(AVG(CASE WHEN "
                         f"{condition} THEN 1.0E0 ELSE 0.0E0 END) AS DOUBLE) AS v FROM "
                         f"{table} WHERE NOT {is_missing(columns[name])}")
    values = collect_statistics(table, " UNION ALL ".join(parts))
    return {name: [float(values.get((name, str(i))) or 0.0) for i in range(len(inner) + 1)]
            for name, inner in edges.items()}


def bin_conditions(name: str, edges: Sequence[float]) -> list[str]:
    """SQL conditions of the ``len(edges) + 1`` bins of column ``name``."""
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


# --------------------------------------------------------------- which pipeline served it
_SERVED_BY = "_flink_dl_served_by"


def mark_served(table: Table, pipeline_dir: str | os.PathLike[str] | None) -> Table:
    """``table``, marked as carrying the served features of ``pipeline_dir``."""
    if pipeline_dir is not None:
        setattr(table, _SERVED_BY, str(Path(pipeline_dir).resolve()))
    return table


def served_by(table: Table) -> str | None:
    """The pipeline directory whose served features ``table`` carries, where known (a
    Table from ``predict``, or ``join_labels`` on one)."""
    return getattr(table, _SERVED_BY, None)


def written_columns(stages: Sequence[Any]) -> list[str]:
    """The columns the pipeline's fitted feature stages write (their values differ from
    the raw input's)."""
    from flink_dl.pipeline.stages.base import FeatureModel

    out: list[str] = []
    for stage in stages:
        if isinstance(stage, FeatureModel):
            out += [c for c in (stage.output_cols or stage.input_cols) if c not in out]
    return out


#: At most this many served features get a reference (a query per column: a model over
#: thousands of one-hot columns would make a plan that size).
MAX_REFERENCE_COLUMNS = 100


def served_features(stages: Sequence[Any], table: Table) -> list[str]:
    """The columns a reference of the served features covers: the model stage's numeric
    scalar feature columns (the first ``MAX_REFERENCE_COLUMNS``); none without a model
    stage."""
    from flink_dl.pipeline.learners import LearnerModel
    from flink_dl.pipeline.sql import NUMERIC_ROOTS

    if not stages or not isinstance(stages[-1], LearnerModel):
        return []
    columns = columns_of(table)
    chosen = [c for c in stages[-1].features if c in columns
              and columns[c].root in NUMERIC_ROOTS]
    if len(chosen) > MAX_REFERENCE_COLUMNS:
        log.warning("Pipeline.fit: reference histograms for the first %d of %d served "
                    "features only", MAX_REFERENCE_COLUMNS, len(chosen))
    return chosen[:MAX_REFERENCE_COLUMNS]


def fit_reference(models: Sequence[Any], last_input: Table, bins: int | None
                  ) -> Reference | None:
    """The reference of a just-fitted pipeline's served features, on its training table:
    ``last_input`` is what its model stage (the last) read. ``None`` without a model
    stage, with ``bins=None``, or without a numeric served feature."""
    import time

    from flink_dl.pipeline.learners import LearnerModel

    if bins is None or not models or not isinstance(models[-1], LearnerModel):
        return None
    served = last_input                                  # what the model stage read
    features = served_features(models, served)
    if not features:
        log.info("Pipeline.fit: no numeric served feature, no reference histograms")
        return None
    started = time.monotonic()
    result = Reference(histograms(served, features, bins, "Pipeline.fit"), SERVED)
    log.info("Pipeline.fit: reference histograms of the served features %s (%d bins) in "
             "%.1f s", features, bins, time.monotonic() - started)
    return result


def reference_of(document: Mapping[str, Any], opened: Any) -> Reference | None:
    """The ``reference`` entry of a saved pipeline document (version ``opened``)."""
    data = document.get("reference")
    if not data:
        return None
    return Reference.from_json(data, pipeline=str(Path(opened.path).parent.resolve()),
                               version=opened.version)
