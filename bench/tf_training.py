"""W1-TF (issue 16, goal 6): W1's data and MLP trained by Keras under
MultiWorkerMirroredStrategy, flink-dl's ``flink_dl.tensorflow.train`` against plain
``tf.distribute`` (two processes, a hand-written ``TF_CONFIG``, pyarrow reading each
worker's half of the files) in the same run.

Samples/s: batches run (the optimizer's step count) x 1024 x workers over the slowest
worker's time from reading its data to the end of ``fit`` (a worker's last, partial batch
counts as full on both sides). Wall: the whole job, or both processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cpu_breakdown import CpuSampler
from bench.tf_workloads import THREAD_ENV
from bench.workloads import BATCH, FEATURES, csv_files, csv_table_ddl

WORKERS = 2


def tf_w1_entry(ctx) -> None:
    import tensorflow as tf

    from bench.tf_workloads import fit_w1

    strategy = ctx.strategy()
    started = time.perf_counter()
    dataset = ctx.dataset(BATCH, features=FEATURES, label="label")
    batches = fit_w1(tf, strategy, dataset)
    ctx.report(batches=batches, seconds=time.perf_counter() - started)


def run_flink_dl(rows: int) -> dict[str, float]:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_dl.tensorflow import TFConfig, train

    os.environ["_python_worker_execution_mode"] = "process"
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(WORKERS)
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(csv_table_ddl("w1tf", rows))
    events = train(env, t_env.from_path("w1tf"), TFConfig(
        workers=WORKERS, entry=tf_w1_entry, env=THREAD_ENV, name="w1-tf"))
    started = time.monotonic()
    with CpuSampler() as cpu, events.execute_and_collect("w1-tf") as results:
        reports = [json.loads(r.metrics) for r in results if r.kind == "metrics"]
    wall = time.monotonic() - started
    return _rates(reports, wall) | {"cpu_s": cpu.seconds}


def run_limit(rows: int) -> dict[str, float]:
    files = [str(p) for p in csv_files(rows)]
    ports = []
    for _ in range(WORKERS):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(str(sock.getsockname()[1]))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.tf_w1_limit", str(rank), ",".join(ports),
             f"{tmp}/worker{rank}.json", *files[rank::WORKERS]],
            env={**os.environ, **THREAD_ENV}) for rank in range(WORKERS)]
        try:
            for proc in procs:
                if proc.wait(timeout=600):
                    raise RuntimeError(f"limit worker exited with {proc.returncode}")
        finally:
            for proc in procs:
                proc.kill()
        wall = time.monotonic() - started
        reports = [json.loads(Path(f"{tmp}/worker{r}.json").read_text())
                   for r in range(WORKERS)]
    return _rates(reports, wall)


def _rates(reports: list[dict], wall: float) -> dict[str, float]:
    if len(reports) != WORKERS:
        raise RuntimeError(f"expected {WORKERS} worker reports, got {reports}")
    batches = sum(r["batches"] for r in reports)
    return {"samples_per_s": batches * BATCH / max(r["seconds"] for r in reports),
            "wall_s": wall, "batches": batches}


def tf_w1_table(rows: int = 1_000_000) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The W1-TF table, and the flink-dl run's CPU breakdown."""
    from bench.training import cpu_table

    csv_files(rows)  # generate once, outside the timings
    limit = run_limit(rows)
    ours = run_flink_dl(rows)
    return [
        {"run": "plain tf.distribute, 2 procs, pyarrow CSV (limit)", "batches": limit["batches"],
         "samples/s": limit["samples_per_s"], "wall s": limit["wall_s"], "vs limit": 1.0},
        {"run": "flink-dl tensorflow.train, 2 workers, Flink CSV source",
         "batches": ours["batches"], "samples/s": ours["samples_per_s"], "wall s": ours["wall_s"],
         "vs limit": ours["samples_per_s"] / limit["samples_per_s"]},
    ], cpu_table(ours)
