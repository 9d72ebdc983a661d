"""Benchmark: recovery time, kill -> every node of the new attempt running again.

Local mini-cluster, process mode (Python operators in worker processes, as on a real
cluster), AM + roles a:1, b:2, c:3 with ``RestartPolicy(delay_s=0)``. Once all six entries
of attempt 0 run, node b:1 is SIGKILLed (its entry process, or the Flink Python worker
hosting it); the figure is the time until the last entry of attempt 1 started (each entry
stamps the wall clock when it starts, so this includes Flink's restart, the AM's and the
nodes' re-registration and the entry processes' start-up).

Baseline, same run: the same topology of plain Python flat_maps where b:1 raises on attempt
0 and the others return at once — Flink's own floor for "restart the region and have 7
Python subtasks running again".
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
from pyflink.datastream import StreamExecutionEnvironment

import flink_dl
from bench.baselines.plain_pyflink import recovery_baseline
from bench.workloads.six_nodes import ROLES, VICTIM


def _stamp_entry(ctx: flink_dl.NodeContext) -> None:
    out = Path(ctx.properties["out"])
    (out / f"{ctx.attempt}-{ctx.role}-{ctx.index}").write_text(f"{time.time()} {os.getpid()}")
    if ctx.attempt == 0:
        ctx.wait_for_stop(timeout=120)


def _kill_when_running(out: Path, kind: str) -> None:
    deadline = time.monotonic() + 120
    victim = out / f"0-{VICTIM[0]}-{VICTIM[1]}"
    while time.monotonic() < deadline and len(list(out.glob("0-*"))) < sum(ROLES.values()):
        time.sleep(0.05)
    time.sleep(1.0)
    pid = int(victim.read_text().split()[1])
    if kind == "python-worker":
        pid = psutil.Process(pid).ppid()
    (out / "killed").write_text(str(time.time()))
    os.kill(pid, signal.SIGKILL)


def _recovery(out: Path) -> float:
    killed = float((out / "killed").read_text())
    starts = [float(p.read_text().split()[0]) for p in out.glob("1-*")]
    assert len(starts) == sum(ROLES.values()), sorted(p.name for p in out.iterdir())
    return max(starts) - killed


def run_flink_dl(kind: str) -> float:
    env = StreamExecutionEnvironment.get_execution_environment()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        config = flink_dl.ClusterConfig(roles=ROLES, entry=_stamp_entry, name="bench-recovery",
                                        properties={"out": tmp},
                                        restart=flink_dl.RestartPolicy(attempts=2, delay_s=0))
        flink_dl.add_cluster(env, config)
        killer = threading.Thread(target=_kill_when_running, args=(out, kind), daemon=True)
        killer.start()
        flink_dl.execute(env, "bench recovery", timeout_s=300)
        killer.join()
        return _recovery(out)


def run_baseline() -> float:
    return recovery_baseline(flink_dl.ClusterConfig(
        roles=ROLES, entry=_stamp_entry, restart=flink_dl.RestartPolicy(attempts=2, delay_s=0)))


def measure(repeats: int = 3) -> list[dict[str, object]]:
    """The recovery table: medians of ``repeats`` kills of each kind, and the baseline's."""
    os.environ["_python_worker_execution_mode"] = "process"
    base = [run_baseline() for _ in range(repeats)]
    entry = [run_flink_dl("node-entry") for _ in range(repeats)]
    worker = [run_flink_dl("python-worker") for _ in range(repeats)]
    b = statistics.median(base)
    rows = []
    for name, values in (("SIGKILL node entry process -> all 6 nodes running (goal <= 10 s)",
                          entry),
                         ("SIGKILL Flink Python worker -> all 6 nodes running (goal <= 10 s)",
                          worker)):
        m = statistics.median(values)
        rows.append({"failure": name, "flink-dl s (median)": m, "max s": max(values),
                     "baseline s": b, "ratio": m / b})
    rows.append({"failure": "baseline: Python subtask raises -> 7 plain subtasks running",
                 "flink-dl s (median)": None, "max s": max(base), "baseline s": b,
                 "ratio": None})
    return rows
