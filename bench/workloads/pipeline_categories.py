"""Planning over many categories (issue 27 point 6): ``StringIndexer`` and ``OneHotEncoder``
models over 100, 1,000 and 10,000 categories, the seconds to plan and to run 10 rows, and
the rows/s of a job into a blackhole sink."""

from __future__ import annotations

import logging
import time
from typing import Any

from bench.workloads.pipeline import table_env

log = logging.getLogger(__name__)

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
            t_env = table_env()
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
