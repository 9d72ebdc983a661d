"""The six-node ML cluster on a real standalone Flink cluster (JobManager + 2 TaskManagers)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from flink_dl.flink.standalone import StandaloneCluster
from tests.leftovers import pid_alive, wait_clean

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.standalone
def test_six_nodes_on_standalone_cluster(tmp_path: Path) -> None:
    job_id = uuid.uuid4().hex
    with StandaloneCluster(task_managers=2, slots_per_task_manager=2) as cluster:
        assert cluster.rest("/overview")["taskmanagers"] == 2
        cluster.submit(ROOT / "tests" / "jobs" / "six_nodes_job.py", "--out", str(tmp_path),
                       "--job-id", job_id, extra_env={"PYTHONPATH": str(ROOT)})
        jobs = cluster.rest("/jobs/overview")["jobs"]
        assert [(j["jid"], j["state"]) for j in jobs] == [(job_id, "FINISHED")]
        seen = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
        assert sorted(seen) == ["a-0", "b-0", "b-1", "c-0", "c-1", "c-2"]
        specs = {json.dumps(s["cluster_spec"], sort_keys=True) for s in seen.values()}
        assert len(specs) == 1
        addresses = [a for addrs in seen["a-0"]["cluster_spec"].values() for a in addrs]
        assert len(set(addresses)) == 6
        assert all(s["job_id"] == job_id for s in seen.values())
        # Python operators ran in TaskManager worker processes, not in this test process.
        assert os.getpid() not in {s["pid"] for s in seen.values()}
        assert wait_clean(job_id) == {}
        assert not [s["pid"] for s in seen.values() if pid_alive(s["pid"])]
