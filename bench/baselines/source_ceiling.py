"""How fast Flink's source alone delivers the W1/W3 rows on this machine: the ceiling that
no operator downstream of it can pass.

The source -> blackhole job, with nothing else, is run for the full row count and for
1,000 rows; the steady rate is the difference of rows over the difference of wall times
(so the job's start-up does not count). The JVM's CPU seconds of the full job say how much
of the 2 cores the source takes for itself, before any Python, Arrow or model work.
"""

from __future__ import annotations

import time

from bench.drivers.cpu_breakdown import KINDS, CpuSampler
from bench.drivers.timing import SMALL_ROWS, steady_pair
from bench.workloads.data import FEATURES, csv_files, csv_table_ddl, datagen_table_ddl


def _source_job(source: str, rows: int, parallelism: int) -> dict[str, float]:
    """``wall_s`` and ``jvm_cpu_s`` of one source -> blackhole job."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    t_env = StreamTableEnvironment.create(env)
    ddl = csv_table_ddl if source == "csv" else datagen_table_ddl
    t_env.execute_sql(ddl("ceiling_src", rows))
    columns = ", ".join(f"{f} FLOAT" for f in [*FEATURES, "label"])
    t_env.execute_sql(f"CREATE TEMPORARY TABLE ceiling_sink ({columns}) WITH "
                      "('connector'='blackhole')")
    started = time.monotonic()
    with CpuSampler() as cpu:
        t_env.from_path("ceiling_src").execute_insert("ceiling_sink").wait()
    return {"wall_s": time.monotonic() - started, "jvm_cpu_s": cpu.seconds.get(KINDS[0], 0.0)}


def source_ceiling(source: str, rows: int, parallelism: int) -> dict[str, float]:
    """``rows_per_s`` (steady: full job minus a 1,000-row job) and ``jvm_cpu_s`` (of the
    full job) for Flink's ``source`` ("csv" or "datagen") feeding a blackhole."""
    if source == "csv":  # written once, outside the timings
        csv_files(rows)
        csv_files(SMALL_ROWS)
    full, small = steady_pair(lambda n: _source_job(source, n, parallelism), rows,
                              f"the {source} source's ceiling")
    return {"rows_per_s": (rows - SMALL_ROWS) / (full["wall_s"] - small["wall_s"]),
            "wall_s": full["wall_s"], "jvm_cpu_s": full["jvm_cpu_s"]}
