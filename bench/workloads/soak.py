"""Memory soak (issue 16): streaming training + streaming predict at a fixed rate.

``examples/streaming.py``'s job (2 DDP ranks learning from an unbounded datagen source,
a new model version every 200 steps, an in-operator predictor following the versions) in
process mode, so Flink's Python workers are processes of their own. Every ``every_s``
seconds the resident memory (RSS) of each kind of process is summed: the rank processes
(node entries), Flink's Python workers, and the JVM for reference. After ``warmup_s`` the
curve should stay flat: the table reports each kind's RSS at the end of warm-up, at the
end, and the largest deviation from the warm-up level.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import psutil

KINDS = ("rank processes", "Flink Python workers", "JVM (reference)")


def kind_of(process: psutil.Process) -> str | None:
    try:
        cmd = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if "flink_dl.cluster.node_main" in cmd:
        return KINDS[0]
    if "pyflink" in cmd and ("beam" in cmd or "fn_execution" in cmd):
        return KINDS[1]
    if "java" in cmd and "flink" in cmd.lower():
        return KINDS[2]
    return None


def sample() -> dict[str, float]:
    """MiB of RSS per kind of process, now (descendants of this process)."""
    totals = dict.fromkeys(KINDS, 0.0)
    for process in psutil.Process(os.getpid()).children(recursive=True):
        kind = kind_of(process)
        if kind is None:
            continue
        try:
            totals[kind] += process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return totals


def measure(duration_s: float = 600.0, every_s: float = 10.0, warmup_s: float = 120.0,
        train_rows_per_s: int = 2000, predict_rows_per_s: int = 2000
        ) -> tuple[list[dict[str, object]], list[dict[str, float]]]:
    """The soak; returns the summary table and the curve (one point per sample)."""
    os.environ["_python_worker_execution_mode"] = "process"
    from pyflink.datastream import StreamExecutionEnvironment

    import flink_dl
    from examples import streaming

    curve: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as model_dir:
        env = StreamExecutionEnvironment.get_execution_environment()
        events, scored = streaming.build(env, model_dir, train_rows_per_s=train_rows_per_s,
                                         predict_rows_per_s=predict_rows_per_s)
        from flink_dl.flink.builder import discarding_sink

        for stream in (events, scored):
            stream.sink_to(discarding_sink()).set_parallelism(1)
        client = env.execute_async("flink-dl soak")
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < duration_s:
                time.sleep(every_s)
                curve.append({"t_s": round(time.monotonic() - started, 1), **sample()})
        finally:
            client.cancel().result()
            flink_dl.cleanup(env)
        versions = len(list(Path(model_dir).glob("v*")))
    table = []
    for kind in KINDS:
        after = [p[kind] for p in curve if p["t_s"] >= warmup_s]
        if not after:
            continue
        level = after[0]
        worst = max(abs(v - level) for v in after)
        table.append({"processes": kind, "MiB after warm-up": level, "MiB at the end": after[-1],
                      "largest change %": 100.0 * worst / level if level else 0.0,
                      "goal": "within ±10 %" if kind != KINDS[2] else "-"})
    table.append({"processes": f"model versions published in {elapsed:.0f} s",
                  "MiB after warm-up": None, "MiB at the end": versions,
                  "largest change %": None, "goal": "-"})
    return table, curve

