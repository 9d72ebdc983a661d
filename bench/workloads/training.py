"""W1: ingest into DDP training (issue 4), against the no-framework limit in the same run.

1,000,000 rows x 16 float32 features + label in 8 CSV files, read through Flink's
filesystem source; MLP 16-64-64-1, MSE, SGD, batch 1024 per worker, 2 workers, 1 epoch.
Samples/s run from creating the data iterator to the last batch (reading included); wall
is the whole job. The limit: two plain PyTorch processes (gloo DDP), each reading its half
of the files with pyarrow and training the same way.

Ray Train + Ray Data runs the same workload in the same run (``bench.baselines.ray_w1``,
in its own virtual environment ``.venv-ray``, made on first use: Ray needs a newer pyarrow
than PyFlink allows). Issue 16's goal for flink-dl: at least 2x Ray's samples/s and at most
0.5x its wall time. If the Ray environment cannot be made (no package registry), its row
says so and the others stand.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

from bench.baselines.ray_w1 import ray_python, run_ray
from bench.baselines.source_ceiling import source_ceiling
from bench.baselines.w1_limit import run_limit
from bench.drivers.cpu_breakdown import CpuSampler, settle
from bench.drivers.tables import cpu_table
from bench.drivers.timing import MIN_ROWS, interleaved_runs, median_run
from bench.workloads.data import (
    BATCH,
    FEATURES,
    WORKERS,
    csv_files,
    csv_table_ddl,
    train_steps,
    w1_model,
)

log = logging.getLogger(__name__)


def w1_entry(ctx) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ctx.prepare_model(w1_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = ctx.dataloader(BATCH, features=FEATURES, label="label")
    started = time.perf_counter()
    rows = train_steps(model, optimizer, ((b["features"], b["label"]) for b in loader))
    ctx.report(rows=rows, seconds=time.perf_counter() - started)


def run_w1_job(rows: int, name: str, build: Callable[[Any, Any], Any]
               ) -> tuple[list[dict], float, CpuSampler]:
    """W1's CSV table through ``build(env, table)`` (a plugin's ``train``, returning its
    events stream) in process mode, parallelism 2: the entries' metrics reports, the job's
    wall seconds and the CPU sampled over it."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    os.environ["_python_worker_execution_mode"] = "process"
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(WORKERS)
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(csv_table_ddl(name.replace("-", "_"), rows))
    events = build(env, t_env.from_path(name.replace("-", "_")))
    started = time.monotonic()
    with CpuSampler() as cpu, events.execute_and_collect(name) as results:
        reports = [json.loads(r.metrics) for r in results if r.kind == "metrics"]
    return reports, time.monotonic() - started, cpu


def run_flink_dl(rows: int) -> dict[str, float]:
    from flink_dl.pytorch import TorchConfig, train

    reports, wall, cpu = run_w1_job(rows, "w1", lambda env, table: train(env, table, TorchConfig(
        world_size=WORKERS, entry=w1_entry, env={"OMP_NUM_THREADS": "1"}, name="w1")))
    total = sum(r["rows"] for r in reports)
    assert total == rows, f"trained on {total} rows, expected {rows}"
    return {"samples_per_s": total / max(r["seconds"] for r in reports), "wall_s": wall,
            "cpu_s": cpu.seconds, "jit_s": cpu.jit_s, "faults": cpu.faults}


def w1_table(rows: int = 1_000_000, repeats: int = 1
             ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The W1 table (median of ``repeats`` interleaved runs of the limit, flink-dl and Ray
    Train + Ray Data: single runs move ±30 % on this VM), and the CPU breakdown of the
    median flink-dl run."""
    csv_files(rows)  # generate once, outside the timings
    runners: dict[str, Callable[[], dict]] = {"limit": lambda: run_limit(rows),
                                              "ours": lambda: run_flink_dl(rows)}
    ray_note = ""
    try:
        python = ray_python()
        runners["ray"] = lambda: run_ray(rows, python)
    except (OSError, subprocess.SubprocessError) as exc:
        ray_note = f" (not run: its environment could not be made, {type(exc).__name__})"
        log.warning("Ray Train + Ray Data not run: %s", exc)
    runs = interleaved_runs(repeats, runners)
    limit, ours = median_run(runs["limit"]), median_run(runs["ours"])
    ray_runs = [r for r in runs.get("ray", []) if "error" not in r]
    failed = [r["error"] for r in runs.get("ray", []) if "error" in r]
    if failed:
        ray_note = f" ({len(failed)} of {repeats} runs {failed[0]})"
    ray = median_run(ray_runs) if ray_runs else None
    settle()
    # what Flink's CSV source gives by itself (too few rows give no steady rate)
    alone = source_ceiling("csv", rows, WORKERS) if rows >= MIN_ROWS else None

    def each(results: list[dict]) -> str:
        return " ".join(f"{r['samples_per_s'] / 1000:.0f}k" for r in results) or "-"

    def row(run: str, result: dict, results: list[dict], versus_ray: bool = True
            ) -> dict[str, object]:
        against = ray if versus_ray else None
        return {"run": run, "samples/s": result["samples_per_s"], "each run": each(results),
                "wall s": result["wall_s"],
                "vs limit": result["samples_per_s"] / limit["samples_per_s"],
                "samples/s vs Ray": against and result["samples_per_s"]
                / against["samples_per_s"],
                "wall vs Ray": against and result["wall_s"] / against["wall_s"],
                # Ray's wall less ray.init: its cluster's start, as PyFlink's JVM starts
                # before flink-dl's clock
                "wall vs Ray after ray.init": against and result["wall_s"]
                / (against["wall_s"] - against["init_s"])}

    table = [row("plain PyTorch, 2 procs, pyarrow CSV (limit)", limit, runs["limit"]),
             row("flink-dl train, 2 workers, Flink CSV source", ours, runs["ours"])]
    ray_run = "Ray Train + Ray Data, 2 workers, Ray Data CSV" + ray_note
    if ray:
        table.append(row(ray_run + f", ray.init {ray['init_s']:.1f} s", ray, ray_runs))
    else:
        table.append({"run": ray_run, **{column: None for column in table[0]
                                         if column != "run"}})
    if alone:
        table.append(row(f"Flink CSV source alone -> blackhole, parallelism {WORKERS}, no "
                         f"training (the source's ceiling, steady rate; its JVM used "
                         f"{alone['jvm_cpu_s']:.1f} CPU s)",
                         {"samples_per_s": alone["rows_per_s"], "wall_s": alone["wall_s"]},
                         [], versus_ray=False))
    return table, cpu_table(ours)

