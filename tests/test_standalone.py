"""ML clusters on a real standalone Flink cluster (JobManager + 2 TaskManagers), submitted
with ``flink run -py`` like production jobs."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_dl.flink.standalone import StandaloneCluster
from tests.leftovers import pid_alive, wait_clean

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def standalone() -> Iterator[StandaloneCluster]:
    """One standalone cluster (2 TaskManagers of 2 slots) for the tests that need no
    special cluster settings (starting one costs ~20 s)."""
    with StandaloneCluster(task_managers=2, slots_per_task_manager=2) as cluster:
        yield cluster


def _job_states(cluster: StandaloneCluster, since: set[str]) -> list[tuple[str, str]]:
    """(jid, state) of the cluster's jobs not in ``since``, oldest first."""
    jobs = [j for j in cluster.rest("/jobs/overview")["jobs"] if j["jid"] not in since]
    return [(j["jid"], j["state"]) for j in sorted(jobs, key=lambda j: j["start-time"])]


@pytest.mark.standalone
def test_six_nodes_on_standalone_cluster(standalone: StandaloneCluster, tmp_path: Path) -> None:
    cluster = standalone
    job_id = uuid.uuid4().hex
    before = {j["jid"] for j in cluster.rest("/jobs/overview")["jobs"]}
    assert cluster.rest("/overview")["taskmanagers"] == 2
    cluster.submit(ROOT / "tests" / "jobs" / "six_nodes_job.py", "--out", str(tmp_path),
                   "--job-id", job_id, extra_env={"PYTHONPATH": str(ROOT)})
    assert _job_states(cluster, before) == [(job_id, "FINISHED")]
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


@pytest.mark.standalone
def test_train_then_predict_from_one_environment(standalone: StandaloneCluster,
                                                 tmp_path: Path) -> None:
    """The README's pattern under ``flink run -py``: ``train`` + ``flink_dl.execute(env)``,
    then ``predict(...).to_pandas()`` and ``execute_and_collect`` from the same environment.
    The training job carries the cluster's job id; the later jobs get ids of their own (a
    pinned id left in the environment made the cluster reject them as duplicates)."""
    cluster = standalone
    before = {j["jid"] for j in cluster.rest("/jobs/overview")["jobs"]}
    cluster.submit(ROOT / "tests" / "jobs" / "train_predict_job.py", "--out", str(tmp_path),
                   extra_env={"PYTHONPATH": str(ROOT)}, timeout_s=400)
    result = json.loads((tmp_path / "result.json").read_text())
    states = _job_states(cluster, before)
    assert [state for _, state in states] == ["FINISHED"] * 3, states
    assert states[0][0] == result["train_flink_job_id"] == result["cluster_job_id"]
    assert len({jid for jid, _ in states}) == 3
    assert sorted(result["ids"]) == list(range(40))
    errors = [abs(p - y) for p, y in zip(result["prediction"], result["y"], strict=True)]
    assert max(errors) < 0.1, errors
    assert result["collected"] == 8 and result["collected_error"] < 0.1, result
    assert wait_clean(result["cluster_job_id"]) == {}


def _task_manager_of_node(job_id: str, node: str, timeout_s: float = 30) -> tuple[int | None,
                                                                                list[str]]:
    """The TaskManager JVM that runs ``node`` (e.g. ``"worker-1"``) of ``job_id``: the one
    with a live entry process of that node among its descendants, else one with any of the
    job's entry processes (a Python worker's children can be re-parented); also returns
    what was seen, for the assertion message."""
    import time

    import psutil

    seen: list[str] = []
    marker = f"flink-dl-{job_id}-"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        fallback = None
        seen = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if "TaskManagerRunner" not in " ".join(proc.info.get("cmdline") or []):
                continue
            try:
                nodes = [" ".join(c.cmdline()) for c in proc.children(recursive=True)]
            except psutil.Error:
                continue
            nodes = [c for c in nodes if "flink_dl.cluster.node_main" in c and marker in c]
            seen.append(f"TaskManager {proc.pid}: {len(nodes)} entry process(es) of the job")
            if any(f"-{node}-" in c for c in nodes):
                return proc.pid, seen
            if nodes and fallback is None:
                fallback = proc.pid
        if fallback is not None:
            return fallback, seen
        time.sleep(0.5)
    return None, seen


@pytest.mark.standalone
def test_job_recovers_from_task_manager_loss(tmp_path: Path) -> None:
    """Kill -9 the TaskManager that runs worker 1 mid-training: Flink restarts the ML
    cluster on the spare slots of the other TaskManager and the job completes, resuming
    from the workers' checkpoints."""
    import signal
    import threading
    import time

    job_id = uuid.uuid4().hex
    extra = {"heartbeat.interval": 1000, "heartbeat.timeout": 8000}
    with StandaloneCluster(task_managers=2, slots_per_task_manager=2,
                           extra_config=extra) as cluster:
        result: dict = {}

        def submit() -> None:
            try:
                cluster.submit(ROOT / "tests" / "jobs" / "tm_kill_job.py", "--out",
                               str(tmp_path), "--job-id", job_id, "--steps", "25",
                               extra_env={"PYTHONPATH": str(ROOT)}, timeout_s=400)
                result["ok"] = True
            except Exception as exc:  # reported by the assertion below
                result["error"] = exc

        client = threading.Thread(target=submit, daemon=True)
        client.start()
        deadline = time.monotonic() + 200
        marker = tmp_path / "steps-1"
        while time.monotonic() < deadline and not (marker.exists()
                                                   and int(marker.read_text()) >= 3):
            time.sleep(0.5)
        tm, seen = _task_manager_of_node(job_id, "worker-1")
        assert tm is not None, f"a TaskManager runs the job's nodes: {seen}"
        os.kill(tm, signal.SIGKILL)
        killed_at = time.monotonic()
        client.join(timeout=400)
        assert result.get("ok"), result
        jobs = cluster.rest("/jobs/overview")["jobs"]
        assert [(j["jid"], j["state"]) for j in jobs] == [(job_id, "FINISHED")]
        finals = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("final-*.json")}
        assert sorted(finals) == ["final-0.json", "final-1.json"]
        assert all(f["steps"] == 25 and f["attempt"] >= 1 for f in finals.values()), finals
        resumed = int((tmp_path / f"resume-1-{finals['final-1.json']['attempt']}").read_text())
        assert resumed >= 3, "worker 1 resumed from its checkpoint"
        print(f"TaskManager killed -> job finished in {time.monotonic() - killed_at:.1f}s")
        assert wait_clean(job_id) == {}
    # The killed TaskManager's Python worker is orphaned (Beam's worker does not notice);
    # stopping the cluster must not leave it (or anything else of the cluster) running.
    assert cluster.processes() == []
