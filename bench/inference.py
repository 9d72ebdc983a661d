"""W3: batch inference (issue 4), against plain PyTorch on the same batches in one process.

MLP 16-256-256-1 over the W1 rows (8 CSV files), batches of 4096 rows, 1 torch thread per
process. flink-dl: Flink's CSV source -> ``flink_dl.pytorch.predict`` (a pandas UDF that
holds the model, parallelism 1 and 2) -> discarding sink, in the embedded default
(loopback), in process mode, and in batch runtime mode (where ``predict`` uses long
bundles). Reported: the operator's rate (first batch in -> last batch out, inside the UDF
processes) and the whole job's rate. The baseline is the best of 3 passes (it moves ±10 %
between passes on this VM; the best is the conservative limit). Last, Flink's source alone
feeding a blackhole (``bench.source_ceiling``): a rate no operator after it can pass.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.cpu_breakdown import KINDS, CpuSampler
from bench.source_ceiling import MIN_ROWS, source_ceiling
from bench.workloads import (
    FEATURES,
    INFER_BATCH,
    csv_table_ddl,
    datagen_table_ddl,
    read_all,
    w3_model,
)
from flink_dl.pytorch import TorchModelHandler


def _thread_schedstat() -> tuple[float, float]:
    """This thread's seconds on a CPU and waiting on a run queue (ready, no core free)."""
    path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    on_cpu, run_queue = Path(path).read_text().split()[:2]
    return int(on_cpu) / 1e9, int(run_queue) / 1e9


class TimedHandler(TorchModelHandler):
    """Records, per process, when its first batch started and its last one ended, and how
    much of the time in the model its thread ran on a CPU or waited for one."""

    def __init__(self, *args: Any, log_dir: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_dir = log_dir

    def run(self, model: Any, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.time()
        on_cpu, run_queue = _thread_schedstat()
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        out = super().run(model, columns)
        faults_after = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        on_cpu_after, run_queue_after = _thread_schedstat()
        stats = self.__dict__.setdefault("_stats", {"first": started, "rows": 0, "busy": 0.0,
                                                    "on_cpu": 0.0, "run_queue": 0.0,
                                                    "faults": 0})
        stats["rows"] += len(next(iter(columns.values())))
        stats["last"] = time.time()
        stats["busy"] += stats["last"] - started
        stats["on_cpu"] += on_cpu_after - on_cpu
        stats["run_queue"] += run_queue_after - run_queue
        stats["faults"] += faults_after - faults
        # rewrite one open file in place: opening a file per batch cost ~10 % of the span
        log_file = self.__dict__.get("_log_file")
        if log_file is None:
            log_file = self.__dict__["_log_file"] = open(  # noqa: SIM115 (kept open)
                Path(self.log_dir, f"{os.getpid()}-{id(self)}.json"), "w")
        log_file.seek(0)
        log_file.write(json.dumps(stats))
        log_file.truncate()
        log_file.flush()
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_stats", None)
        state.pop("_log_file", None)
        return state


def plain_torch(x: np.ndarray, model_path: Path) -> float:
    """Rows/s of the model over ``x`` in batches of 4096, one thread, one process."""
    torch.set_num_threads(1)
    model = w3_model()
    model.load_state_dict(torch.load(model_path))
    model.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(x), INFER_BATCH):
            model(torch.from_numpy(x[start:start + INFER_BATCH]))
    return len(x) / (time.perf_counter() - started)


def flink_dl_predict(rows: int, model_path: Path, parallelism: int,
                     source: str = "csv", batch_mode: bool = False) -> dict[str, float]:
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
        handler = TimedHandler(model_path, FEATURES, factory=w3_model, batch_size=INFER_BATCH,
                               num_threads=1, log_dir=log_dir)
        scored = predict(t_env.from_path("w3"), handler)
        started = time.monotonic()
        with CpuSampler() as cpu:
            scored.select(scored.prediction).execute_insert("w3_sink").wait()
        wall = time.monotonic() - started
        stats = [json.loads(p.read_text()) for p in Path(log_dir).glob("*.json")]
    total = sum(s["rows"] for s in stats)
    assert total == rows, f"predicted {total} rows, expected {rows}"
    span = max(s["last"] for s in stats) - min(s["first"] for s in stats)
    busy = sum(s["busy"] for s in stats)
    cores = len(os.sched_getaffinity(0))
    return {"operator_rows_per_s": total / span, "model_rows_per_s": total / busy,
            "job_rows_per_s": total / wall, "wall_s": wall, "model_s": busy,
            "model_cpu_s": sum(s["on_cpu"] for s in stats),
            "model_faults": sum(s["faults"] for s in stats),
            "model_wait_s": sum(s["run_queue"] for s in stats),
            "job_cpu_s": sum(cpu.seconds.values()),
            "jvm_cpu_s": cpu.seconds.get(KINDS[0], 0.0), "jit_cpu_s": cpu.jit_s,
            "machine_busy": (sum(cpu.seconds.values()) + cpu.elsewhere_s) / (cpu.wall_s * cores)}


def w3_table(rows: int = 1_000_000) -> list[dict[str, object]]:
    x, _ = read_all(rows)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "w3.pt"
        torch.manual_seed(0)
        torch.save(w3_model().state_dict(), model_path)
        baseline = max(plain_torch(x, model_path) for _ in range(3))
        table = [{"run": "plain PyTorch, 1 process, in-memory batches (baseline)",
                  "rows/s": baseline, "vs baseline": 1.0, "in-model rows/s": baseline,
                  "job rows/s": None, "wall s": None, "model s": len(x) / baseline,
                  "model on-CPU s": None, "model CPU-wait s": None, "model page faults": None,
                  "job CPU s": None, "JVM CPU s": None, "JVM JIT CPU s": None,
                  "machine busy": None}]
        default_mode = os.environ.get("_python_worker_execution_mode")
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
            table.append({
                "run": f"flink-dl predict, parallelism {parallelism}, Flink {source} source, "
                       f"{mode or default_mode or 'loopback'}"
                       f"{', batch mode' if batch_mode else ''}",
                "rows/s": ours["operator_rows_per_s"],
                "vs baseline": ours["operator_rows_per_s"] / baseline,
                "in-model rows/s": ours["model_rows_per_s"],
                "job rows/s": ours["job_rows_per_s"], "wall s": ours["wall_s"],
                "model s": ours["model_s"], "model on-CPU s": ours["model_cpu_s"],
                "model CPU-wait s": ours["model_wait_s"],
                "model page faults": ours["model_faults"], "job CPU s": ours["job_cpu_s"],
                "JVM CPU s": ours["jvm_cpu_s"], "JVM JIT CPU s": ours["jit_cpu_s"],
                "machine busy": ours["machine_busy"]})
        ceilings = ((1, "datagen"), (2, "datagen"), (1, "csv"), (2, "csv")) \
            if rows >= MIN_ROWS else ()  # too few rows for a steady rate
        for parallelism, source in ceilings:
            # the source alone, nothing downstream: no operator after it can go faster
            alone = source_ceiling(source, rows, parallelism)
            table.append({
                "run": f"Flink {source} source alone -> blackhole, no predict, parallelism "
                       f"{parallelism} (the source's ceiling, steady rate)",
                "rows/s": alone["rows_per_s"], "vs baseline": alone["rows_per_s"] / baseline,
                "in-model rows/s": None, "job rows/s": rows / alone["wall_s"],
                "wall s": alone["wall_s"], "model s": None, "model on-CPU s": None,
                "model CPU-wait s": None, "model page faults": None, "job CPU s": None,
                "JVM CPU s": alone["jvm_cpu_s"], "JVM JIT CPU s": None, "machine busy": None})
    return table
