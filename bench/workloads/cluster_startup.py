"""Benchmark: time from job start to all 6 nodes RUNNING on the local mini-cluster.

Same run, same JVM, same topology (AM p1 + roles a:1, b:2, c:3):
* flink-dl: submit -> every node RUNNING (entry process started, reported to the AM), and
  the goal figure, Flink job start (the AM operator open) -> every node RUNNING;
* baseline: the same operators as no-op flat_maps: submit -> every subtask invoked, i.e.
  Flink's own floor for "7 Python subtasks are running".
"""

from __future__ import annotations

import json
import statistics
import time

from pyflink.datastream import StreamExecutionEnvironment

import flink_dl
from bench.baselines.plain_pyflink import startup_baseline
from bench.workloads.six_nodes import ROLES


def _noop_entry(ctx: flink_dl.NodeContext) -> None:
    return None


def run_flink_dl() -> dict[str, float]:
    env = StreamExecutionEnvironment.get_execution_environment()
    config = flink_dl.ClusterConfig(roles=ROLES, entry=_noop_entry, name="bench")
    outcomes = flink_dl.add_cluster(env, config)
    submitted = time.time()
    with outcomes.execute_and_collect("bench flink-dl startup") as results:
        records = [json.loads(r) for r in results]
    am = next(r for r in records if r["kind"] == "am")
    t = am["timing"]
    return {"submit_to_all_running": t["all_running"] - submitted,
            "job_start_to_all_running": t["all_running"] - t["am_started"],
            "first_registration_to_all_running": t["all_running"] - t["first_registration"]}


def measure(repeats: int = 3) -> list[dict[str, object]]:
    """The start-up table: medians of ``repeats`` runs of each, interleaved."""
    startup_baseline()  # warm the JVM gateway and caches for both contenders
    dl, base = [], []
    for _ in range(repeats):
        base.append(startup_baseline())
        dl.append(run_flink_dl())
    med = {k: statistics.median(r[k] for r in dl) for k in dl[0]}
    bmed = {k: statistics.median(r[k] for r in base) for k in base[0]}
    rows = [
        {"metric": "submit -> all 6 nodes RUNNING", "flink-dl s": med["submit_to_all_running"],
         "baseline s": bmed["submit_to_all_running"],
         "ratio": med["submit_to_all_running"] / bmed["submit_to_all_running"]},
        {"metric": "job start (AM open) -> all RUNNING (goal < 3 s)",
         "flink-dl s": med["job_start_to_all_running"],
         "baseline s": bmed["job_start_to_all_running"],
         "ratio": med["job_start_to_all_running"] / max(bmed["job_start_to_all_running"], 1e-3)},
        {"metric": "first registration -> all RUNNING",
         "flink-dl s": med["first_registration_to_all_running"], "baseline s": None,
         "ratio": None},
    ]
    return rows
