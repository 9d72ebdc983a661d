"""Pipeline transform throughput (issue 14): a fitted 6-stage feature pipeline against the
same features hand-written in Flink SQL and against scikit-learn in a pandas UDF.

The input is generated in the JVM from a datagen sequence (so every variant reads the
same rows) and materialised by a DataStream round trip in the JVM: a categorical
``region``, a skewed ``income`` with NULLs every 33rd row, and two integer columns. The
pipeline, fitted with Flink on the first ``FIT_ROWS`` rows:

1. ``Imputer(["income"])`` (mean), 2. ``SQLTransform`` (``LN(1 + income)``),
3. ``StandardScaler(["log_income", "age"])``, 4. ``MinMaxScaler(["visits"])``,
5. ``QuantileDiscretizer(["income"], ["income_bucket"], num_buckets=4)``,
6. ``OneHotEncoder(["region"])``.

Variants, each ``INSERT INTO`` a blackhole sink, median of ``repeats`` jobs:

* **source only**: the generated rows, untransformed (the ceiling);
* **pipeline**: ``PipelineModel.transform`` (its generated SQL, fitted values as literals);
* **hand-written SQL**: one ``SELECT`` with the same fitted values typed in as literals,
  the way a user writes features without a pipeline (no invalid-value checks);
* **scikit-learn in a pandas UDF**: the equivalent ``SimpleImputer`` /
  ``StandardScaler`` / ``MinMaxScaler`` / ``KBinsDiscretizer`` / ``OneHotEncoder``, fitted
  on the same rows, applied by a vectorised ``Table.map``.

Before timing, the three transforms run on the fit rows and are compared: the pipeline and
the hand-written SQL must agree bit for bit; scikit-learn's largest difference is reported.
Throughput is rows over Flink's net runtime of the job (deployment excluded; the wall time
from submission is reported too); ratios are of rows/s. The SQL variants read 5x the rows
of the scikit-learn one, so their fixed costs and the JIT's warm-up weigh little.

The hand-written SQL and scikit-learn variants are in ``bench.baselines.pipeline_features``;
the planning benchmark over many categories in ``bench.workloads.pipeline_categories``.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from bench.baselines.pipeline_features import hand_written_sql, sklearn_table, sklearn_transformer

log = logging.getLogger(__name__)

FIT_ROWS = 50_000
REGIONS = ("north", "south", "east", "west")
#: The rows, computed in the JVM from a datagen sequence ``n``.
GENERATED = (
    "SELECT n AS id, "
    "CASE WHEN MOD(n, 10) < 4 THEN 'north' WHEN MOD(n, 10) < 7 THEN 'south' "
    "WHEN MOD(n, 10) < 9 THEN 'east' ELSE 'west' END AS region, "
    "CASE WHEN MOD(n, 33) = 0 THEN CAST(NULL AS DOUBLE) "
    "ELSE EXP(3.0E0 + 0.8E0 * SIN(CAST(n AS DOUBLE) * 0.7E0)) END AS income, "
    "CAST(18 + MOD(n * 7, 62) AS INT) AS age, CAST(MOD(n * 13, 9) AS INT) AS visits "
    "FROM {source}")


def table_env():
    """A table environment of parallelism 1."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    return StreamTableEnvironment.create(env)


def _rows(t_env, name: str, count: int):
    """The generated input of ``count`` rows (a bounded datagen sequence)."""
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name}_seq (n BIGINT) WITH ('connector' = "
                      f"'datagen', 'fields.n.kind' = 'sequence', 'fields.n.start' = '0', "
                      f"'fields.n.end' = '{count - 1}', 'rows-per-second' = '1000000000')")
    generated = t_env.sql_query(GENERATED.format(source=f"{name}_seq"))
    # Materialised through a DataStream round trip (JVM only), so the variants read plain
    # columns, as from a real source, and the planner cannot inline the generating
    # expressions into every place a feature reads a column.
    return t_env.from_data_stream(t_env.to_data_stream(generated))


def fit(t_env):
    """The fitted 6-stage pipeline and its number of fitting jobs."""
    from flink_dl.pipeline import (
        Imputer,
        MinMaxScaler,
        OneHotEncoder,
        Pipeline,
        QuantileDiscretizer,
        SQLTransform,
        StandardScaler,
    )

    stages = [Imputer(["income"]),
              SQLTransform("SELECT *, LN(1 + income) AS log_income FROM __THIS__"),
              StandardScaler(["log_income", "age"]),
              MinMaxScaler(["visits"]),
              QuantileDiscretizer(["income"], ["income_bucket"], num_buckets=4),
              OneHotEncoder(["region"])]
    return Pipeline(stages).fit(_rows(t_env, "fit", FIT_ROWS))


def _result_type(table):
    from pyflink.table import DataTypes

    schema = table.get_schema()
    return DataTypes.ROW([DataTypes.FIELD(n, t.nullable())
                          for n, t in zip(schema.get_field_names(),
                                          schema.get_field_data_types(), strict=True)])


def _collect(table, order: list[str]) -> pd.DataFrame:
    return table.to_pandas()[order].sort_values("id").reset_index(drop=True)


def check_equivalence(t_env, model, apply) -> dict[str, float]:
    """Run the three transforms on the fit rows; pipeline == hand SQL bit for bit."""
    fitted = _rows(t_env, "check", FIT_ROWS)
    piped = model.transform(fitted)
    order = piped.get_schema().get_field_names()
    t_env.create_temporary_view("check_rows", fitted)
    hand = t_env.sql_query(hand_written_sql(model, "check_rows"))
    learned = sklearn_table(fitted, apply, _result_type(piped))
    a, b, c = (_collect(t, order) for t in (piped, hand, learned))
    assert len(a) == len(b) == len(c) == FIT_ROWS, (len(a), len(b), len(c))
    for column in order:
        left, right = a[column].to_numpy(), b[column].to_numpy()
        if not np.array_equal(left, right):
            raise AssertionError(f"pipeline and hand-written SQL differ in {column!r}: "
                                 f"max |diff| {np.max(np.abs(left - right))}")
    numeric = [col for col in order if col not in ("id", "income_bucket")]
    sk_diff = float(np.max(np.abs(a[numeric].to_numpy(float) - c[numeric].to_numpy(float))))
    bucket_agree = float((a["income_bucket"] == c["income_bucket"]).mean())
    return {"sklearn_max_abs_diff": sk_diff, "sklearn_bucket_agreement": bucket_agree}


def _sink(t_env, name: str, table) -> None:
    schema = table.get_schema()
    columns = ", ".join(f"`{n}` {t}" for n, t in zip(schema.get_field_names(),
                                                      _sql_types(table), strict=True))
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name} ({columns}) WITH ('connector' = "
                      "'blackhole')")


def _sql_types(table) -> list[str]:
    from flink_dl.pipeline.sql import columns_of

    return [c.type for c in columns_of(table).values()]


def time_job(t_env, table, name: str) -> tuple[float, float]:
    """(net runtime s, wall s) of ``INSERT INTO`` a blackhole sink."""
    _sink(t_env, f"{name}_sink", table)
    started = time.perf_counter()
    result = t_env.sql_query(f"SELECT * FROM {table}").execute_insert(f"{name}_sink")
    result.wait()
    wall = time.perf_counter() - started
    net_ms = result.get_job_client().get_job_execution_result().result().get_net_runtime()
    return net_ms / 1000.0, wall


def measure(rows: int, repeats: int, sql_scale: int = 5) -> list[dict[str, Any]]:
    """The table; the SQL variants read ``sql_scale`` x ``rows`` rows (their per-row cost
    is small next to a job's fixed costs and the JIT's warm-up), scikit-learn ``rows``."""
    t_env = table_env()
    started = time.perf_counter()
    model = fit(t_env)
    fit_s = time.perf_counter() - started
    fit_frame = _rows(t_env, "fitframe", FIT_ROWS).to_pandas()
    apply = sklearn_transformer(fit_frame)
    agreement = check_equivalence(t_env, model, apply)
    result_type = None
    timings: dict[str, list[tuple[float, float]]] = {}
    variants = ("source only", "pipeline", "hand-written SQL", "scikit-learn in a pandas UDF")
    counts = {v: rows * (1 if v.startswith("scikit") else sql_scale) for v in variants}
    for repeat in range(repeats):
        for variant in variants:
            t_env = table_env()
            name = f"r{repeat}_{variant.split()[0].replace('-', '_')}"
            source = _rows(t_env, name, counts[variant])
            if variant == "source only":
                table = source
            elif variant == "pipeline":
                table = model.transform(source)
            elif variant == "hand-written SQL":
                t_env.create_temporary_view(f"{name}_in", source)
                table = t_env.sql_query(hand_written_sql(model, f"{name}_in"))
            else:
                result_type = result_type or _result_type(model.transform(source))
                table = sklearn_table(source, apply, result_type)
            timings.setdefault(variant, []).append(time_job(t_env, table, name))
            log.info("%s, repeat %d: %.2f s net", variant, repeat, timings[variant][-1][0])
    rate = {v: counts[v] / statistics.median(t[0] for t in timings[v]) for v in variants}
    table_rows: list[dict[str, Any]] = []
    for variant in variants:
        table_rows.append({
            "variant": variant, "rows": f"{counts[variant]:,}",
            "net s": statistics.median(t[0] for t in timings[variant]),
            "wall s": statistics.median(t[1] for t in timings[variant]),
            "rows/s (net)": round(rate[variant]),
            "vs hand-written SQL": rate[variant] / rate["hand-written SQL"],
        })
    notes = [f"fit: {model.fit_jobs} Flink jobs on {FIT_ROWS:,} rows, {fit_s:.1f} s",
             "check on the fit rows: pipeline == hand-written SQL bit for bit; scikit-learn "
             f"max |diff| {agreement['sklearn_max_abs_diff']:.1e}, buckets agree "
             f"{agreement['sklearn_bucket_agreement']:.4f}"]
    for note in notes:
        table_rows.append({"variant": f"({note})", "rows": None, "net s": None,
                           "wall s": None, "rows/s (net)": None, "vs hand-written SQL": None})
    return table_rows
