"""Benchmark: job start -> all 6 nodes RUNNING, one host vs several hosts.

The same job script (``tests/jobs/six_nodes_job.py``: AM + roles a:1, b:2, c:3, no
placement setting) is submitted with ``flink run`` to two real Flink clusters of the same
shape (a JobManager, 2 TaskManagers of 2 slots) in the same run:

* single host: ``StandaloneCluster`` on localhost (its TaskManagers share /tmp);
* multi-host: ``tests/multihost_flink.FlinkHosts``, each JVM in its own network namespace
  with a private /tmp (needs root), nodes finding the AM through the dataflow.

Figures come from the AM's own timings (``am_started``, ``all_running``) and the Flink job's
``start-time`` from REST, all on this machine's clock.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "tests" / "jobs" / "six_nodes_job.py"


def _figures(out: Path, job_start_ms: int) -> dict[str, float]:
    (am,) = json.loads((out / "am-summary.jsonl").read_text())
    timing = am["timing"]
    return {"am_to_running": timing["all_running"] - timing["am_started"],
            "job_to_running": timing["all_running"] - job_start_ms / 1000.0}


def _single_host(repeats: int) -> list[dict[str, float]]:
    from flink_dl.flink.standalone import StandaloneCluster

    results = []
    with StandaloneCluster(task_managers=2, slots_per_task_manager=2) as cluster:
        for _ in range(repeats):
            job_id = uuid.uuid4().hex
            with tempfile.TemporaryDirectory() as out:
                cluster.submit(JOB, "--out", out, "--job-id", job_id,
                               extra_env={"PYTHONPATH": str(ROOT)})
                start = cluster.rest(f"/jobs/{job_id}")["start-time"]
                results.append(_figures(Path(out), start))
    return results


def _multi_host(repeats: int) -> list[dict[str, float]]:
    from tests.multihost_flink import flink_cluster, shared_dir

    results = []
    with flink_cluster(tms=("tm1", "tm2"), slots=2) as flink:
        for _ in range(repeats):
            job_id = uuid.uuid4().hex
            out = shared_dir("bench-startup")
            try:
                done = flink.submit(JOB, "--out", str(out), "--job-id", job_id)
                if done.returncode:
                    raise RuntimeError(f"multi-host job failed:\n{done.stdout[-3000:]}\n"
                                       f"{done.stderr[-3000:]}")
                start = flink.rest(f"/jobs/{job_id}")["start-time"]
                results.append(_figures(out, start))
            finally:
                shutil.rmtree(out, ignore_errors=True)
    return results


def measure(repeats: int = 3) -> list[dict[str, Any]]:
    """The table: medians of ``repeats`` jobs on each cluster."""
    single = _single_host(repeats)
    if os.geteuid() != 0 or not shutil.which("ip"):
        multi: list[dict[str, float]] = []
    else:
        multi = _multi_host(repeats)
    rows = []
    for key, label in (("job_to_running", "Flink job start -> all 6 nodes RUNNING"),
                       ("am_to_running", "AM started -> all 6 nodes RUNNING")):
        one = statistics.median(r[key] for r in single)
        many = statistics.median(r[key] for r in multi) if multi else None
        rows.append({"metric": label, "single host s": one, "multi-host s": many,
                     "ratio": many / one if many is not None else None})
    if not multi:
        rows.append({"metric": "multi-host needs root and iproute2: not measured",
                     "single host s": None, "multi-host s": None, "ratio": None})
    return rows
