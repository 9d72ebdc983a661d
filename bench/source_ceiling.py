"""How fast Flink's source alone delivers the W1/W3 rows on this machine: the ceiling that
no operator downstream of it can pass.

The source -> blackhole job, with nothing else, is run for the full row count and for
1,000 rows; the steady rate is the difference of rows over the difference of wall times
(so the job's start-up does not count). The JVM's CPU seconds of the full job say how much
of the 2 cores the source takes for itself, before any Python, Arrow or model work.
"""

from __future__ import annotations

import time

from bench.cpu_breakdown import KINDS, CpuSampler
from bench.workloads import FEATURES, csv_files, csv_table_ddl, datagen_table_ddl

SMALL_ROWS = 1_000
#: Fewer rows than this give no steady rate above the start-up's noise.
MIN_ROWS = 100 * SMALL_ROWS


def _source_job(source: str, rows: int, parallelism: int) -> tuple[float, float]:
    """Wall seconds and JVM CPU seconds of one source -> blackhole job."""
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
    return time.monotonic() - started, cpu.seconds.get(KINDS[0], 0.0)


def source_ceiling(source: str, rows: int, parallelism: int) -> dict[str, float]:
    """``rows_per_s`` (steady: full job minus a 1,000-row job) and ``jvm_cpu_s`` (of the
    full job) for Flink's ``source`` ("csv" or "datagen") feeding a blackhole."""
    if rows < MIN_ROWS:
        raise ValueError(f"the source's ceiling needs at least {MIN_ROWS} rows, got {rows}")
    if source == "csv":  # written once, outside the timings
        csv_files(rows)
        csv_files(SMALL_ROWS)
    # the small job twice: the first pays this job shape's one-time costs
    small_wall = min(_source_job(source, SMALL_ROWS, parallelism)[0] for _ in range(2))
    wall, jvm_cpu = _source_job(source, rows, parallelism)
    if wall <= small_wall:
        raise RuntimeError(f"{source} source: {rows} rows took {wall:.2f} s, no longer than "
                           f"{SMALL_ROWS} rows ({small_wall:.2f} s); rerun on a quiet machine")
    return {"rows_per_s": (rows - SMALL_ROWS) / (wall - small_wall), "wall_s": wall,
            "jvm_cpu_s": jvm_cpu}
