"""Disk and memory soak of the real-time loop: the README's cold-start loop (serve, join the
labels, ``OnlineStandardScaler`` and ``FTRLLogisticRegression`` learning) on an unbounded
stream, for ``duration_s``.

Requests and labels come from two datagen sources over the same id sequence, at
``rate`` rows/s; features and labels are functions of the id (so both sources agree):
``x1 = sin(0.37 id)``, ``x2 = cos(1.13 id)``, ``x3 = sin(2.71 id)``, a click when
``x1 + x2 > 0``. Every ``every_s`` seconds the bytes under the pipeline directory and the
learner's model directory (versions and checkpoints) are summed, with the resident memory
of each kind of process. The learner publishes a version whenever it has caught up with its
input (several a second) and the scaler one per second: without pruning the disk would grow
by every one of them.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.workloads.soak import KINDS, sample

X = ["x1", "x2", "x3"]
#: Event time starts here (ms since the epoch: 2026-01-01).
EPOCH_MS = 1_767_225_600_000


def directory_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (files that vanish while counted are skipped)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def generated(t_env: Any, name: str, rate: int, columns: str, rows: int) -> Any:
    """A datagen table over ids 0 .. ``rows`` at ``rate`` rows/s with the computed
    columns (a bounded sequence: datagen may hold its range in memory)."""
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {name} (
          id BIGINT,
          ts AS TO_TIMESTAMP_LTZ({EPOCH_MS} + id * 1000 / {rate}, 3),
          {columns},
          WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
        ) WITH ('connector' = 'datagen', 'rows-per-second' = '{rate}',
                'fields.id.kind' = 'sequence', 'fields.id.start' = '0',
                'fields.id.end' = '{rows}')""")
    return t_env.from_path(name)


def measure(duration_s: float = 600.0, every_s: float = 10.0, warmup_s: float = 120.0,
            rate: int = 200) -> tuple[list[dict[str, object]], list[dict[str, float]]]:
    """The soak; returns the summary table and the curve (one point per sample)."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment
    from pyflink.table.expressions import col

    import flink_dl
    from flink_dl.models.store import ModelStore
    from flink_dl.online import FTRLLogisticRegression, OnlineStandardScaler, join_labels
    from flink_dl.pipeline import Pipeline, predict

    features = "x1 AS SIN(id * 0.37), x2 AS COS(id * 1.13), x3 AS SIN(id * 2.71)"
    curve: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="online-soak-") as work_dir:
        work = Path(work_dir)
        env = StreamExecutionEnvironment.get_execution_environment()
        t_env = StreamTableEnvironment.create(env)
        rows = int(rate * (duration_s + 300))  # more than the soak reads
        requests = generated(t_env, "requests", rate, features, rows)
        labels = generated(t_env, "labels", rate,
                           f"{features}, y AS CASE WHEN SIN(id * 0.37) + COS(id * 1.13) > 0 "
                           "THEN 1 ELSE 0 END", rows).select(col("id"), col("ts"), col("y"))
        scaler = OnlineStandardScaler(X)
        learner = FTRLLogisticRegression(X, "y", model_dir=work / "online")
        Pipeline([scaler, learner]).untrained(requests).save(work / "pipes")
        scored = predict(requests, work / "pipes")
        scaler.fit_stream(requests, work / "pipes")
        learner.fit_stream(join_labels(scored, labels, key="id", within=10), work / "pipes")
        client = env.execute_async("flink-dl online soak")
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < duration_s:
                time.sleep(every_s)
                curve.append({
                    "t_s": round(time.monotonic() - started, 1),
                    "disk MiB": (directory_bytes(work / "pipes")
                                 + directory_bytes(work / "online")) / 2**20,
                    **sample()})
        finally:
            client.cancel().result()
            flink_dl.cleanup(env)
        pipeline_versions = ModelStore(work / "pipes").latest_number() or 0
        model_versions = ModelStore(work / "online").latest_number() or 0
        kept = len(ModelStore(work / "pipes").version_numbers())
    table = []
    for kind in ("disk MiB", *KINDS):
        after = [p[kind] for p in curve if p["t_s"] >= warmup_s]
        if not after:
            continue
        level = after[0]
        worst = max(abs(v - level) for v in after)
        table.append({"measure": kind if kind == "disk MiB" else f"RSS MiB, {kind}",
                      "after warm-up": round(level, 2), "at the end": round(after[-1], 2),
                      "largest change %": round(100.0 * worst / level, 1) if level else 0.0,
                      "goal": "flat (within ±10 %)" if kind == "disk MiB" else "-"})
    table.append({"measure": f"versions published in {elapsed:.0f} s (pipeline / model); "
                             "pipeline versions kept at the end",
                  "after warm-up": None, "at the end": f"{pipeline_versions} / "
                                                       f"{model_versions}; {kept} kept",
                  "largest change %": None, "goal": "-"})
    return table, curve
