"""W3: batch inference (issue 4), against plain PyTorch on the same batches in one process.

MLP 16-256-256-1 over the W1 rows (8 CSV files), batches of 4096 rows, 1 torch thread per
process. flink-dl: Flink's CSV source -> ``flink_dl.pytorch.predict`` (a pandas UDF that
holds the model, parallelism 1 and 2) -> discarding sink, in the embedded default
(loopback), in process mode, and in batch runtime mode (where ``predict`` uses long
bundles). Reported: the operator's rate (first batch in -> last batch out, inside the UDF
processes) and the whole job's rate. The baseline is the best of 3 passes (it moves ±10 %
between passes on this VM; the best is the conservative limit); likewise each source's
first job, a 200,000-row one that warms the JVM's JIT compiler up, is not reported.

Then what bounds the operator, measured in this run. In each predict run, two rates no run
can pass: the Python worker's thread's ("worker-thread bound": it decodes a batch, runs the
model and encodes the result one after the other, so its CPU time, the model's and the
rest, is the least the span can take) and the 2 cores' ("2-core bound": the CPU that every
process on the machine used during the operator's span, first batch in -> last batch out,
spread over both cores with none left idle). With them, whose CPU filled the span: the JVM,
its JIT compiler, its busiest task thread, and Python outside the model. Last, two runs
without the model: ``predict``'s round trip with a model that returns its first feature
(source, Arrow both ways, pandas, sink: its steady rate and CPU), and Flink's source alone
feeding a blackhole (``bench.baselines.source_ceiling``).
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from bench.baselines.plain_torch import plain_torch
from bench.baselines.source_ceiling import source_ceiling
from bench.drivers.cpu_breakdown import KINDS, CpuSampler
from bench.drivers.timing import MIN_ROWS, SMALL_ROWS, steady_pair
from bench.workloads.data import (
    FEATURES,
    INFER_BATCH,
    csv_table_ddl,
    datagen_table_ddl,
    first_feature_model,
    read_all,
    w3_model,
)
from flink_dl.pytorch import TorchModelHandler


def _thread_schedstat() -> tuple[float, float]:
    """This thread's seconds on a CPU and waiting on a run queue (ready, no core free)."""
    path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    on_cpu, run_queue = Path(path).read_text().split()[:2]
    return int(on_cpu) / 1e9, int(run_queue) / 1e9


#: A gap between two batches longer than this is a wait for input (a batch's own Arrow and
#: pandas work takes a few ms): at parallelism 1, mostly a bundle's end, where Flink stops
#: feeding until every result is back.
LONG_WAIT_S = 0.05


class TimedHandler(TorchModelHandler):
    """Records, per process, when its first batch started and its last one ended, how
    much of the time in the model its thread ran on a CPU or waited for one, the CPU its
    thread spent between two batches (Arrow and pandas work of the Python worker), and the
    gaps between batches longer than ``LONG_WAIT_S`` (waits for input)."""

    def __init__(self, *args: Any, log_dir: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_dir = log_dir

    def run(self, model: Any, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.time()
        thread, thread_cpu = threading.get_ident(), time.thread_time()
        between = thread_cpu - self.__dict__["_left_cpu"] \
            if self.__dict__.get("_left_thread") == thread else 0.0
        on_cpu, run_queue = _thread_schedstat()
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        out = super().run(model, columns)
        faults_after = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        on_cpu_after, run_queue_after = _thread_schedstat()
        stats = self.__dict__.setdefault("_stats", {"first": started, "rows": 0, "busy": 0.0,
                                                    "on_cpu": 0.0, "run_queue": 0.0,
                                                    "faults": 0, "between_cpu": 0.0,
                                                    "long_waits": 0, "long_waits_s": 0.0})
        waited = started - stats.get("last", started)
        if waited > LONG_WAIT_S:  # the worker had no batch: at a bundle's end, mostly
            stats["long_waits"] += 1
            stats["long_waits_s"] += waited
        stats["rows"] += len(next(iter(columns.values())))
        stats["last"] = time.time()
        stats["busy"] += stats["last"] - started
        stats["on_cpu"] += on_cpu_after - on_cpu
        stats["run_queue"] += run_queue_after - run_queue
        stats["faults"] += faults_after - faults
        stats["between_cpu"] += between
        # rewrite one open file in place: opening a file per batch cost ~10 % of the span
        log_file = self.__dict__.get("_log_file")
        if log_file is None:
            log_file = self.__dict__["_log_file"] = open(  # noqa: SIM115 (kept open)
                Path(self.log_dir, f"{os.getpid()}-{id(self)}.json"), "w")
        log_file.seek(0)
        log_file.write(json.dumps(stats))
        log_file.truncate()
        log_file.flush()
        self.__dict__["_left_thread"] = thread
        self.__dict__["_left_cpu"] = time.thread_time()
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_stats", None)
        state.pop("_log_file", None)
        state.pop("_left_thread", None)
        state.pop("_left_cpu", None)
        return state


def flink_dl_predict(rows: int, model_path: Path, parallelism: int,
                     source: str = "csv", batch_mode: bool = False,
                     factory: Callable[[], torch.nn.Module] = w3_model) -> dict[str, float]:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, StreamTableEnvironment

    from flink_dl.pytorch import predict

    with tempfile.TemporaryDirectory() as log_dir:
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(parallelism)
        t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_batch_mode()) \
            if batch_mode else StreamTableEnvironment.create(env)
        if source == "csv":
            t_env.execute_sql(csv_table_ddl("w3", rows))
        else:  # the same shape generated inside the JVM: how fast the operator can be fed
            t_env.execute_sql(datagen_table_ddl("w3", rows))
        t_env.execute_sql("CREATE TEMPORARY TABLE w3_sink (prediction FLOAT) WITH "
                          "('connector'='blackhole')")
        handler = TimedHandler(model_path, FEATURES, factory=factory, batch_size=INFER_BATCH,
                               num_threads=1, log_dir=log_dir)
        scored = predict(t_env.from_path("w3"), handler)
        started = time.monotonic()
        with CpuSampler(interval_s=0.1) as cpu:  # 0.1 s: the span is a few seconds
            scored.select(scored.prediction).execute_insert("w3_sink").wait()
        wall = time.monotonic() - started
        stats = [json.loads(p.read_text()) for p in Path(log_dir).glob("*.json")]
    total = sum(s["rows"] for s in stats)
    assert total == rows, f"predicted {total} rows, expected {rows}"
    first, last = min(s["first"] for s in stats), max(s["last"] for s in stats)
    span = last - first
    # what the machine did while the operator ran (first batch in -> last batch out)
    in_span = cpu.window(first, last)
    model_cpu = sum(s["on_cpu"] for s in stats)
    busy = sum(s["busy"] for s in stats)
    cores = psutil.cpu_count()  # the machine's busy CPU counts every core
    # the worker's thread of each subtask runs its batches one after another: decode, model,
    # encode; no run passes the rate at which the busiest of them could go on its own
    thread_cpu = [s["on_cpu"] + s["between_cpu"] for s in stats]
    return {"operator_rows_per_s": total / span,
            "worker_thread_cpu_s": sum(thread_cpu),
            "long_waits": sum(s["long_waits"] for s in stats),
            "long_waits_s": sum(s["long_waits_s"] for s in stats),
            "thread_bound_rows_per_s": total / max([*thread_cpu, 1e-9]),
            "model_rows_per_s": total / busy,
            "job_rows_per_s": total / wall, "wall_s": wall, "model_s": busy,
            "model_cpu_s": model_cpu,
            "span_cores_busy": in_span["machine"] / (span * cores),
            "span_jvm_cpu_s": in_span.get(KINDS[0], 0.0), "span_jit_cpu_s": in_span["JIT"],
            "span_task_thread_cpu_s": in_span["busiest task thread"],
            "span_python_cpu_s": in_span.get(KINDS[1], 0.0) + in_span.get(KINDS[3], 0.0)
            - model_cpu,
            "model_faults": sum(s["faults"] for s in stats),
            "model_wait_s": sum(s["run_queue"] for s in stats),
            "job_cpu_s": sum(cpu.seconds.values()),
            "jvm_cpu_s": cpu.seconds.get(KINDS[0], 0.0), "jit_cpu_s": cpu.jit_s,
            "machine_busy": (sum(cpu.seconds.values()) + cpu.elsewhere_s) / (cpu.wall_s * cores)}


def predict_round_trip(rows: int, model_path: Path, parallelism: int) -> dict[str, float]:
    """``predict`` without a model's work (Flink's datagen source, the embedded default): a
    model that returns its first feature. ``rows_per_s`` is the steady rate (the full job
    minus a 1,000-row job, the small one run twice); ``cpu_s_per_row`` and
    ``jvm_cpu_s_per_row`` the steady CPU (every process, and the JVM's part) outside the
    handler's ``run``: the source, Arrow both ways, pandas, the sink."""
    full, small = steady_pair(
        lambda n: flink_dl_predict(n, model_path, parallelism, "datagen",
                                   factory=first_feature_model), rows, "predict's round trip")
    steady_rows, steady_wall = rows - SMALL_ROWS, full["wall_s"] - small["wall_s"]

    def outside_model(run: dict[str, float]) -> float:
        return run["job_cpu_s"] - run["model_cpu_s"]

    return {"rows_per_s": steady_rows / steady_wall, "wall_s": full["wall_s"],
            "cpu_s_per_row": (outside_model(full) - outside_model(small)) / steady_rows,
            "jvm_cpu_s_per_row": (full["jvm_cpu_s"] - small["jvm_cpu_s"]) / steady_rows}


#: Rows of the unreported job that warms the JVM up for each source.
WARM_UP_ROWS = 200_000


#: (column, key in ``_row``'s figures)
_COLUMNS = (("rows/s", "rate"), ("vs baseline", "ratio"),
            ("worker-thread bound vs baseline", "thread_bound"),
            ("2-core bound vs baseline", "cores_bound"),
            ("in-model rows/s", "model_rate"), ("job rows/s", "job_rate"), ("wall s", "wall"),
            ("model s", "model"), ("model on-CPU s", "model_cpu"),
            ("model CPU-wait s", "model_wait"), ("model page faults", "faults"),
            ("worker thread CPU s", "thread_cpu"),
            ("worker waits > 50 ms", "long_waits"), ("worker waits > 50 ms s", "long_waits_s"),
            ("job CPU s", "job_cpu"),
            ("JVM CPU s", "jvm_cpu"), ("JVM JIT CPU s", "jit_cpu"), ("machine busy", "busy"),
            ("span: cores busy", "span_busy"), ("span: JVM CPU s", "span_jvm"),
            ("span: JIT CPU s", "span_jit"),
            ("span: busiest Flink source task thread CPU s", "span_task"),
            ("span: Python CPU s outside the model", "span_python"))


def _row(run: str, **figures: float | None) -> dict[str, object]:
    """One table row: every column, ``None`` where ``figures`` has none."""
    return {"run": run, **{column: figures.get(key) for column, key in _COLUMNS}}


def w3_table(rows: int = 1_000_000) -> list[dict[str, object]]:
    x, _ = read_all(rows)
    with tempfile.TemporaryDirectory() as tmp:
        model_path, no_model_path = Path(tmp) / "w3.pt", Path(tmp) / "first-feature.pt"
        torch.manual_seed(0)
        torch.save(w3_model().state_dict(), model_path)
        torch.save(first_feature_model().state_dict(), no_model_path)
        baseline = max(plain_torch(x, model_path) for _ in range(3))
        table = [_row("plain PyTorch, 1 process, in-memory batches (baseline)", rate=baseline,
                      ratio=1.0, model_rate=baseline, model=len(x) / baseline)]
        default_mode = os.environ.get("_python_worker_execution_mode")
        for source in ("csv", "datagen"):
            # one unreported job per source first: the JVM's JIT compiles the source's and
            # predict's code paths, as the baseline's passes are warm
            flink_dl_predict(min(rows, WARM_UP_ROWS), model_path, 1, source)
        for parallelism, source, mode, batch_mode in (
                (1, "csv", None, False), (2, "csv", None, False),
                (1, "datagen", None, False), (2, "datagen", None, False),
                (1, "datagen", "process", False), (2, "datagen", "process", False),
                (1, "datagen", None, True), (2, "datagen", None, True)):
            # the embedded default (loopback unless the caller set a mode), then process
            # mode; last, offline scoring in batch runtime mode (predict's long bundles)
            if mode:
                os.environ["_python_worker_execution_mode"] = mode
            try:
                ours = flink_dl_predict(rows, model_path, parallelism, source, batch_mode)
            finally:
                if default_mode is None:
                    os.environ.pop("_python_worker_execution_mode", None)
                else:
                    os.environ["_python_worker_execution_mode"] = default_mode
            row = _row(
                f"flink-dl predict, parallelism {parallelism}, Flink {source} source, "
                f"{mode or default_mode or 'loopback'}{', batch mode' if batch_mode else ''}",
                rate=ours["operator_rows_per_s"],
                ratio=ours["operator_rows_per_s"] / baseline,
                model_rate=ours["model_rows_per_s"], job_rate=ours["job_rows_per_s"],
                wall=ours["wall_s"], model=ours["model_s"], model_cpu=ours["model_cpu_s"],
                model_wait=ours["model_wait_s"], faults=ours["model_faults"],
                thread_cpu=ours["worker_thread_cpu_s"], long_waits=ours["long_waits"],
                long_waits_s=ours["long_waits_s"], job_cpu=ours["job_cpu_s"],
                jvm_cpu=ours["jvm_cpu_s"], jit_cpu=ours["jit_cpu_s"],
                busy=ours["machine_busy"],
                thread_bound=ours["thread_bound_rows_per_s"] / baseline,
                # the same CPU work with both cores busy all through the span
                cores_bound=ours["operator_rows_per_s"] / ours["span_cores_busy"] / baseline,
                span_busy=ours["span_cores_busy"], span_jvm=ours["span_jvm_cpu_s"],
                span_jit=ours["span_jit_cpu_s"], span_task=ours["span_task_thread_cpu_s"],
                span_python=ours["span_python_cpu_s"])
            table.append(row)
        if rows < MIN_ROWS:  # too few rows for a steady rate
            return table
        for parallelism in (1, 2):
            # predict without the model's work: what the rest costs per row, steadily
            trip = predict_round_trip(rows, no_model_path, parallelism)
            table.append(_row(
                f"predict's round trip without a model (it returns its first feature), "
                f"parallelism {parallelism}, Flink datagen source, "
                f"{default_mode or 'loopback'} (steady rate; steady CPU outside the model: "
                f"{trip['cpu_s_per_row'] * 1e6:.2f} s per million rows, "
                f"{trip['jvm_cpu_s_per_row'] * 1e6:.2f} of them the JVM's)",
                rate=trip["rows_per_s"], ratio=trip["rows_per_s"] / baseline,
                wall=trip["wall_s"]))
        for parallelism, source in ((1, "datagen"), (2, "datagen"), (1, "csv"), (2, "csv")):
            # the source alone, nothing downstream: no operator after it can go faster
            alone = source_ceiling(source, rows, parallelism)
            table.append(_row(
                f"Flink {source} source alone -> blackhole, no predict, parallelism "
                f"{parallelism} (the source's ceiling, steady rate)",
                rate=alone["rows_per_s"], ratio=alone["rows_per_s"] / baseline,
                job_rate=rows / alone["wall_s"], wall=alone["wall_s"],
                jvm_cpu=alone["jvm_cpu_s"]))
    return table
