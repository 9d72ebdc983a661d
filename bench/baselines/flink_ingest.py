"""The ingest benchmark's Flink baselines on the same source: the source feeding a
blackhole (the limit) and a row-at-a-time Python operator (PyFlink's row path)."""

from __future__ import annotations

import time
from pathlib import Path

from pyflink.common.typeinfo import Types

from bench.workloads.data import FEATURES, ingest_env, ingest_source_ddl
from flink_dl.flink.builder import discarding_sink


def run_blackhole(rows: int, csv_dir: Path | None) -> float:
    """Seconds of a source -> blackhole job (generated rows, or ``csv_dir``'s files)."""
    _, t_env = ingest_env()
    t_env.execute_sql(ingest_source_ddl("src", rows, csv_dir))
    cols = ", ".join(f"{c} FLOAT" for c in FEATURES)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE sink ({cols}) WITH ('connector'='blackhole')")
    started = time.perf_counter()
    t_env.execute_sql("INSERT INTO sink SELECT * FROM src").wait()
    return time.perf_counter() - started


def run_row_at_a_time(rows: int, csv_dir: Path | None) -> float:
    """Seconds of a source -> Python map (one call per row) -> discarding sink job."""
    env, t_env = ingest_env()
    t_env.execute_sql(ingest_source_ddl("src", rows, csv_dir))
    stream = t_env.to_data_stream(t_env.from_path("src"))
    stream.map(lambda r: 1, output_type=Types.INT()).sink_to(discarding_sink())
    started = time.perf_counter()
    env.execute("row-at-a-time")
    return time.perf_counter() - started
