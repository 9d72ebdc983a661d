"""A real Flink cluster across test hosts (``tests/multihost_flink.py``): a JobManager host
and two TaskManager hosts (network namespaces with private /tmp; needs root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.multihost import TestHosts, _pid_alive, cleanup_stale, list_namespaces
from tests.multihost_flink import FlinkHosts, job_ids, remove_shared_dir, shared_dir

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.multihost,
    pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nsenter", "unshare")),
                       reason="test hosts need ip, nsenter and unshare"),
]


@pytest.fixture(scope="module")
def flink_hosts() -> Iterator[FlinkHosts]:
    """One cluster (jm + tm1, tm2 of 2 slots) for the module; tests that stop it leave the
    restart to the next user of ``flink``."""
    cleanup_stale()
    with TestHosts(["jm", "tm1", "tm2"]) as hosts, FlinkHosts(hosts, slots=2) as flink:
        yield flink


@pytest.fixture
def flink(flink_hosts: FlinkHosts) -> FlinkHosts:
    return flink_hosts.ensure_started()


@pytest.fixture
def shared_out(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A dir every test host sees (pytest's tmp_path is under /tmp: private per host)."""
    path = shared_dir(request.node.name)
    yield path
    remove_shared_dir(path)


def test_job_runs_on_both_taskmanager_hosts(flink: FlinkHosts, shared_out: Path) -> None:
    overview = flink.rest("/overview")
    assert (overview["taskmanagers"], overview["slots-total"]) == (2, 4), overview
    assert sorted(t["host"] for t in flink.taskmanagers()) == ["tm1", "tm2"]
    t0 = time.monotonic()
    proc = flink.submit(ROOT / "tests" / "jobs" / "where_job.py", "--out", str(shared_out),
                        timeout=240)
    submit_s = time.monotonic() - t0
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:], flink.log_tails())
    (job_id,) = job_ids(proc.stdout)
    assert flink.wait_job(job_id, timeout_s=30) == "FINISHED"

    # Where the subtasks ran, by REST: 2 flat_map subtasks on each TaskManager host.
    rows = [r for r in flink.job_vertices(job_id) if (r["vertex"] or "").startswith("FlatMap")]
    assert sorted(r["subtask"] for r in rows) == [0, 1, 2, 3], rows
    assert Counter(r["host"] for r in rows) == {"tm1": 2, "tm2": 2}, rows
    assert {r["status"] for r in rows} == {"FINISHED"}, rows

    # ... and by what the Python workers wrote (to a dir every host sees).
    seen = [json.loads(p.read_text()) for p in sorted(shared_out.glob("*.json"))]
    assert sorted(s["value"] for s in seen) == [0, 1, 2, 3], seen
    hostnames = {flink.hosts[n].hostname: n for n in ("tm1", "tm2")}
    by_subtask = {s["subtask"]: hostnames.get(s["hostname"]) for s in seen}
    assert by_subtask == {r["subtask"]: r["host"] for r in rows}, (seen, rows)
    assert {s["test_host"] for s in seen} == {"tm1", "tm2"}
    # Python workers are processes of the TaskManager hosts, not of this process or the JM.
    assert os.getpid() not in {s["pid"] for s in seen}
    assert len({s["pid"] for s in seen}) == 4
    print(f"cluster start {flink.start_s:.1f}s, flink run {submit_s:.1f}s")

    # Nothing of the job is left on any host (workers, memfds, flink-dl-* dirs).
    deadline = time.monotonic() + 20
    while (left := flink.all_leftovers()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == {}, left


def test_a_killed_taskmanager_is_noticed_and_replaced(flink: FlinkHosts) -> None:
    old = {t["host"]: t["id"] for t in flink.taskmanagers()}
    killed = flink.kill_host_processes("tm1")
    assert flink.jvms.get("tm1") is None and killed
    assert flink.hosts["tm1"].pids() == [flink.hosts["tm1"].anchor.pid]
    t0 = time.monotonic()
    while flink.rest("/overview")["taskmanagers"] != 1:  # heartbeat.timeout is 10 s
        assert time.monotonic() - t0 < 40, flink.taskmanagers()
        time.sleep(0.5)
    lost_s = time.monotonic() - t0
    new = flink.restart_tm("tm1")
    assert new["host"] == "tm1" and new["id"] != old["tm1"]
    assert {t["host"]: t["id"] for t in flink.taskmanagers()}["tm2"] == old["tm2"]
    assert flink.rest("/overview")["slots-total"] == 4
    restart_s = time.monotonic() - t0 - lost_s
    print(f"TaskManager loss noticed after {lost_s:.1f}s, restart {restart_s:.1f}s")


def test_stop_leaves_nothing_on_any_host(flink: FlinkHosts) -> None:
    hosts = flink.hosts
    # leftovers() sees what a job could leave: a process, a memfd, a flink-dl-* dir.
    stray = hosts["tm1"].popen([sys.executable, "-c", "import os, sys, time; "
                                "os.memfd_create('flink-dl-probe'); print('ok', flush=True); "
                                "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert stray.stdout and stray.stdout.readline().strip() == "ok"
    hosts["tm2"].sh("mkdir -p /tmp/flink-dl-probe-0 /tmp/flink-dl-rendezvous-0/probe "
                    "/tmp/flink-dl-rendezvous-1").check_returncode()
    left = flink.all_leftovers()
    assert sorted(left) == ["tm1", "tm2"], left
    assert [x.split()[0].rstrip(":") for x in left["tm1"]] == ["process", "memfd"], left
    assert "memfd:flink-dl-probe" in left["tm1"][1], left
    assert sorted(left["tm2"]) == ["path: /tmp/flink-dl-probe-0",
                                   "path: /tmp/flink-dl-rendezvous-0/probe"], left
    hosts["tm2"].sh("rm -r /tmp/flink-dl-probe-0 /tmp/flink-dl-rendezvous-0/probe "
                    "/tmp/flink-dl-rendezvous-1").check_returncode()
    pids = {h.name: h.pids() for h in hosts}
    assert all(len(p) >= 2 for p in pids.values()), pids  # anchor + the Flink JVM
    jvms = [p.pid for p in flink.jvms.values()]
    flink.stop()
    for h in hosts:
        assert h.pids() == [h.anchor.pid], (h.name, h.pids())
    assert not [p for ps in pids.values() for p in ps
                if _pid_alive(p) and p not in {h.anchor.pid for h in hosts}]
    assert not [p for p in jvms if _pid_alive(p)]
    assert flink.all_leftovers() == {}
    assert set(hosts.namespaces) <= set(list_namespaces())  # the hosts themselves stay
    flink.stop()  # idempotent
