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

``category_planning`` (a second table): ``StringIndexer`` and ``OneHotEncoder`` models over
100, 1,000 and 10,000 categories, the seconds to plan and to run 10 rows, and the rows/s
(issue 27 point 6).
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

FIT_ROWS = 50_000
REGIONS = ("north", "south", "east", "west")
INPUT_COLUMNS = ("id", "region", "income", "age", "visits")
#: The rows, computed in the JVM from a datagen sequence ``n``.
GENERATED = (
    "SELECT n AS id, "
    "CASE WHEN MOD(n, 10) < 4 THEN 'north' WHEN MOD(n, 10) < 7 THEN 'south' "
    "WHEN MOD(n, 10) < 9 THEN 'east' ELSE 'west' END AS region, "
    "CASE WHEN MOD(n, 33) = 0 THEN CAST(NULL AS DOUBLE) "
    "ELSE EXP(3.0E0 + 0.8E0 * SIN(CAST(n AS DOUBLE) * 0.7E0)) END AS income, "
    "CAST(18 + MOD(n * 7, 62) AS INT) AS age, CAST(MOD(n * 13, 9) AS INT) AS visits "
    "FROM {source}")


def _t_env():
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


def _lit(value: float) -> str:
    from flink_dl.pipeline.sql import double_literal

    return double_literal(value)


def hand_written_sql(model, source: str) -> str:
    """The pipeline's features as one SELECT a user would type, fitted values pasted in."""
    imputer, _, scaler, minmax, discretizer, onehot = model.stages
    mean_income = float(imputer.surrogates[0])
    (m_log, m_age), (s_log, s_age) = scaler.mean, scaler.std
    lo, hi = minmax.data_min[0], minmax.data_max[0]
    inner = discretizer.splits_array[0][1:-1]
    income = f"COALESCE(income, {_lit(mean_income)})"
    buckets = " ".join(f"WHEN x.income < {_lit(s)} THEN {i}" for i, s in enumerate(inner))
    hot = ", ".join(f"CASE WHEN x.region = '{c}' THEN 1.0E0 ELSE 0.0E0 END AS region_{c}"
                    for c in onehot.categories[0])
    return (f"SELECT x.id, {hot}, x.income, (CAST(x.age AS DOUBLE) - {_lit(m_age)}) / "
            f"{_lit(s_age)} AS age, (CAST(x.visits AS DOUBLE) - {_lit(lo)}) / "
            f"{_lit(hi - lo)} * 1.0E0 + 0.0E0 AS visits, "
            f"(LN(1 + x.income) - {_lit(m_log)}) / {_lit(s_log)} AS log_income, "
            f"CAST(CASE {buckets} ELSE {len(inner)} END AS INT) AS income_bucket "
            f"FROM (SELECT id, region, {income} AS income, age, visits FROM {source}) AS x")


def sklearn_transformer(fit_rows: pd.DataFrame):
    """scikit-learn objects fitted on the same rows; a function DataFrame -> features."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (
        KBinsDiscretizer,
        MinMaxScaler,
        OneHotEncoder,
        StandardScaler,
    )

    imputer = SimpleImputer(strategy="mean").fit(fit_rows[["income"]])
    income = imputer.transform(fit_rows[["income"]])
    scaler = StandardScaler().fit(np.column_stack([np.log1p(income[:, 0]), fit_rows["age"]]))
    minmax = MinMaxScaler().fit(fit_rows[["visits"]].astype(float))
    bins = KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="quantile",
                            quantile_method="linear").fit(income)
    onehot = OneHotEncoder(sparse_output=False).fit(fit_rows[["region"]])

    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        imputed = imputer.transform(frame[["income"]])
        scaled = scaler.transform(np.column_stack([np.log1p(imputed[:, 0]), frame["age"]]))
        hot = onehot.transform(frame[["region"]])
        out = {"id": frame["id"].to_numpy()}
        out.update({f"region_{c}": hot[:, i] for i, c in enumerate(onehot.categories_[0])})
        out.update({"income": imputed[:, 0], "age": scaled[:, 1],
                    "visits": minmax.transform(frame[["visits"]].astype(float))[:, 0],
                    "log_income": scaled[:, 0],
                    "income_bucket": bins.transform(imputed)[:, 0].astype("int32")})
        return pd.DataFrame(out)

    return apply


def sklearn_table(table, apply, result_type):
    """``table.map`` through a pandas UDF that runs ``apply`` on each Arrow batch."""
    from pyflink.table.udf import udf

    def batch(frame: pd.DataFrame) -> pd.DataFrame:
        frame.columns = list(INPUT_COLUMNS)
        return apply(frame)

    return table.map(udf(batch, result_type=result_type, func_type="pandas"))


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


def main(rows: int, repeats: int, sql_scale: int = 5) -> list[dict[str, Any]]:
    """The table; the SQL variants read ``sql_scale`` x ``rows`` rows (their per-row cost
    is small next to a job's fixed costs and the JIT's warm-up), scikit-learn ``rows``."""
    t_env = _t_env()
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
            t_env = _t_env()
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


# ------------------------------------------------------------------ many categories
#: Numbers of categories of the planning benchmark (issue 27 point 6).
CATEGORY_COUNTS = (100, 1_000, 10_000)


def _category_input(t_env, name: str, rows: int, categories: int):
    """``rows`` generated rows whose ``c`` takes ``categories`` + 2% unseen values."""
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name}_seq (n BIGINT) WITH ('connector' = "
                      f"'datagen', 'fields.n.kind' = 'sequence', 'fields.n.start' = '0', "
                      f"'fields.n.end' = '{rows - 1}', 'rows-per-second' = '1000000000')")
    spread = categories + categories // 50
    generated = t_env.sql_query(f"SELECT n AS id, CONCAT('v', CAST(MOD(n * 7919, {spread}) "
                                f"AS STRING)) AS c FROM {name}_seq")
    return t_env.from_data_stream(t_env.to_data_stream(generated))


def category_planning(rows: int = 200_000,
                      counts: tuple[int, ...] = CATEGORY_COUNTS) -> list[dict[str, Any]]:
    """Planning and running ``StringIndexer`` / ``OneHotEncoder`` models over ``counts``
    categories (``handle_invalid="keep"``; 2% of the values unseen): the seconds from
    ``transform`` to the optimised plan (``explain``), to a 10-row job done (plan, code
    generation, compilation, the job), and the rows/s of a job into a blackhole sink (net
    runtime) over ``rows`` rows (a one-hot encoder: ``rows * 1,000 / categories`` at most).
    One output column per category runs up to 1,000 categories: at 10,000, Flink's code
    generation did not finish in 300 s (its code splitter is quadratic in the generated
    class's fields)."""
    from pyflink.table import TableDescriptor

    from flink_dl.pipeline import OneHotEncoderModel, StringIndexerModel

    out: list[dict[str, Any]] = []
    for count in counts:
        categories = [f"v{i}" for i in range(count)]
        stages = [("StringIndexer", StringIndexerModel(["c"], [categories],
                                                       handle_invalid="keep")),
                  ("OneHotEncoder, output='array'",
                   OneHotEncoderModel(["c"], [categories], handle_invalid="keep",
                                      output="array"))]
        if count <= 1_000:
            stages.append(("OneHotEncoder, one column per category",
                           OneHotEncoderModel(["c"], [categories], handle_invalid="keep")))
        for label, stage in stages:
            # a one-hot array row is `count` doubles: fewer rows where it is long
            job_rows = rows if label == "StringIndexer" else min(rows, rows * 1_000 // count)
            tag = f"{label.split(',')[0].lower()}_{stage.get_params().get('output', 'x')}_{count}"
            t_env = _t_env()
            started = time.perf_counter()
            stage.transform(_category_input(t_env, f"{tag}_p", 10, count)).explain()
            plan_s = time.perf_counter() - started
            started = time.perf_counter()
            stage.transform(_category_input(t_env, f"{tag}_t", 10, count)).execute_insert(
                TableDescriptor.for_connector("blackhole").build()).wait()
            ten_s = time.perf_counter() - started
            result = stage.transform(_category_input(t_env, f"{tag}_r", job_rows, count)
                                     ).execute_insert(
                TableDescriptor.for_connector("blackhole").build())
            result.wait()
            net_s = result.get_job_client().get_job_execution_result().result(
            ).get_net_runtime() / 1000.0
            log.info("%s over %d categories: plan %.2f s, 10 rows %.2f s, %.0f rows/s", label,
                     count, plan_s, ten_s, job_rows / net_s)
            out.append({"stage": label, "categories": f"{count:,}",
                        "transform -> plan s": plan_s, "transform -> 10-row job done s": ten_s,
                        "rows": f"{job_rows:,}", "rows/s (net)": round(job_rows / net_s)})
    return out
