"""W1-TF (issue 16, goal 6): W1's data and MLP trained by Keras under
MultiWorkerMirroredStrategy, flink-dl's ``flink_dl.tensorflow.train`` against plain
``tf.distribute`` (two processes, a hand-written ``TF_CONFIG``, pyarrow reading each
worker's half of the files) in the same run.

Keras splits each dataset batch (the global batch, 2048) across the workers: every step
trains 1024 rows per worker, PyTorch W1's batch. Samples/s: steps (the optimizer's count,
the same on every worker) x 2048 over the slowest worker's time from reading its data to
the end of ``fit`` (a last, partial batch counts as full on both sides); of it, "data s"
until the dataset is made (flink-dl: the first epoch in full, to agree on equal steps; plain:
pyarrow reads the files) and "fit s" the rest. Wall: the whole job, or both processes.
"noise CPU s": each run's CPU seconds spent outside it on the machine or stolen by the
hypervisor (a run that is not alone shows here).
"""

from __future__ import annotations

import time

from bench.baselines.tf_w1_limit import run_limit
from bench.drivers.tables import cpu_table
from bench.drivers.timing import interleaved_runs, median_run
from bench.workloads.data import FEATURES, csv_files
from bench.workloads.tf_models import GLOBAL_BATCH, THREAD_ENV, WORKERS, cpu_noise, worker_rates
from bench.workloads.training import run_w1_job


def tf_w1_entry(ctx) -> None:
    import tensorflow as tf

    from bench.workloads.tf_models import fit_w1

    strategy = ctx.strategy()
    started = time.perf_counter()
    dataset = ctx.dataset(GLOBAL_BATCH, features=FEATURES, label="label")
    read = time.perf_counter() - started
    steps = fit_w1(tf, strategy, dataset)
    ctx.report(steps=steps, seconds=time.perf_counter() - started, read_s=read)


def run_flink_dl(rows: int) -> dict[str, float]:
    from flink_dl.tensorflow import TFConfig, train

    reports, wall, cpu = run_w1_job(rows, "w1-tf", lambda env, table: train(env, table, TFConfig(
        workers=WORKERS, entry=tf_w1_entry, env=THREAD_ENV, name="w1-tf")))
    return worker_rates(reports, wall) | {"cpu_s": cpu.seconds, "jit_s": cpu.jit_s,
                                          "faults": cpu.faults} | cpu_noise(cpu)


def tf_w1_table(rows: int = 1_000_000, repeats: int = 3
                ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The W1-TF table (each side's median run of ``repeats``, interleaved), and the CPU
    breakdown of flink-dl's median run."""
    csv_files(rows)  # generate once, outside the timings
    runs = interleaved_runs(repeats, {"limit": lambda: run_limit(rows),
                                      "ours": lambda: run_flink_dl(rows)})
    limits, ours = runs["limit"], runs["ours"]
    limit, mine = median_run(limits), median_run(ours)
    return [
        {"run": "plain tf.distribute, 2 procs, pyarrow CSV (limit)", "steps": limit["steps"],
         "samples/s": limit["samples_per_s"], "each run": _each(limits),
         "data s": limit["read_s"], "fit s": limit["fit_s"], "wall s": limit["wall_s"],
         "noise CPU s": _noise_of(limits), "vs limit": 1.0},
        {"run": "flink-dl tensorflow.train, 2 workers, Flink CSV source", "steps": mine["steps"],
         "samples/s": mine["samples_per_s"], "each run": _each(ours),
         "data s": mine["read_s"], "fit s": mine["fit_s"], "wall s": mine["wall_s"],
         "noise CPU s": _noise_of(ours),
         "vs limit": mine["samples_per_s"] / limit["samples_per_s"]},
    ], cpu_table(mine)


def _noise_of(runs: list[dict]) -> str:
    """Each run's CPU seconds busy outside the run + stolen by the hypervisor."""
    return " ".join(f"{r['elsewhere_s'] + r['steal_s']:.1f}" for r in runs)


def _each(runs: list[dict]) -> str:
    return " ".join(f"{r['samples_per_s'] / 1000:.0f}k" for r in runs)
