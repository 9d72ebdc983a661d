"""ML clusters across hosts that share nothing: a JobManager and two TaskManagers, each in
its own network namespace with a private /tmp and /dev/shm (``tests/multihost_flink.py``).

No job here sets any flink-dl placement or rendezvous option: the nodes find the AM
through the dataflow and advertise the address of their route to it. Every host's
``/tmp`` is its own, so the default file rendezvous store could not have worked; the
leftover checks also show that nothing was written there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.multihost import SUBNET
from tests.multihost_flink import (
    FlinkHosts,
    RestError,
    flink_cluster,
    job_ids,
    remove_shared_dir,
    shared_dir,
)

pytestmark = [
    pytest.mark.multihost,
    pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nsenter", "unshare")),
                       reason="test hosts need ip, nsenter and unshare"),
]

ROOT = Path(__file__).resolve().parents[1]
#: The script the Kubernetes manifest runs too (tests/test_deploy_files.py checks that).
MULTIHOST_JOB_SCRIPT = "examples/digits.py"


@pytest.fixture(scope="module")
def flink() -> Iterator[FlinkHosts]:
    """One cluster for the module: 2 TaskManagers of 2 slots, slots spread over them."""
    with flink_cluster(tms=("tm1", "tm2"), slots=2,
                       conf_overrides={"taskmanager.load-balance.mode": "SLOTS"}) as cluster:
        yield cluster


@pytest.fixture
def shared(request) -> Iterator[Path]:
    path = shared_dir(request.node.name)
    yield path
    remove_shared_dir(path)


def _tm_addresses(flink: FlinkHosts) -> dict[str, str]:
    return {flink.hosts[name].address: name for name in flink.tms}


def _assert_clean(flink: FlinkHosts, timeout_s: float = 30.0) -> None:
    """No process, memfd, work dir or rendezvous entry of flink-dl is left on any host."""
    deadline = time.monotonic() + timeout_s
    while (left := flink.all_leftovers()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == {}, left


def test_six_nodes_form_across_hosts_with_reachable_addresses(flink: FlinkHosts,
                                                               shared: Path) -> None:
    job_id = uuid.uuid4().hex
    done = flink.submit(ROOT / "tests" / "jobs" / "six_nodes_job.py", "--out", str(shared),
                        "--job-id", job_id, "--entry", "dial_peers", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + flink.log_tails()
    seen = {p.stem: json.loads(p.read_text()) for p in shared.glob("*.json")}
    assert sorted(seen) == ["a-0", "b-0", "b-1", "c-0", "c-1", "c-2"]
    assert len({json.dumps(s["cluster_spec"], sort_keys=True) for s in seen.values()}) == 1
    addresses = [a for addrs in seen["a-0"]["cluster_spec"].values() for a in addrs]
    assert len(set(addresses)) == 6, addresses
    ips = {a.rsplit(":", 1)[0] for a in addresses}
    tm_ips = _tm_addresses(flink)
    # Never loopback; every address is a TaskManager host's own, and both hosts run nodes.
    assert ips == set(tm_ips), (ips, tm_ips)
    assert all(ip.startswith(f"{SUBNET}.") for ip in ips)
    # Each node reached every peer at its advertised address, and was reached by all.
    names = {f"{s['role']}:{s['index']}" for s in seen.values()}
    for s in seen.values():
        me = f"{s['role']}:{s['index']}"
        assert set(s["reached"]) == names - {me}
        assert set(s["reached"].values()) == names - {me}
        assert s["dialled_by"] == sorted(names - {me})
        # The node's own address is on the host it ran on.
        own = s["cluster_spec"][s["role"]][s["index"]].rsplit(":", 1)[0]
        assert flink.hosts[tm_ips[own]].hostname == s["hostname"]
    (am,) = json.loads((shared / "am-summary.jsonl").read_text())
    assert am["state"] == "FINISHED"
    startup = am["timing"]["all_running"] - am["timing"]["am_started"]
    print(f"multi-host: AM start -> all 6 nodes RUNNING in {startup:.2f}s")
    _assert_clean(flink)


def test_pytorch_ddp_digits_with_one_rank_per_host(flink: FlinkHosts, shared: Path) -> None:
    """examples/digits.py as written (no flink-dl setting), under ``flink run``: gloo
    DDP with a rank on each TaskManager host, then batch inference from the saved model
    (the model directory is the only shared path: a volume both hosts mount)."""
    import torch

    audit = shared / "audit"
    audit.mkdir()
    done = flink.submit(ROOT / MULTIHOST_JOB_SCRIPT, "--workers", "2", "--model-dir",
                        str(shared / "models"), "--audit-dir", str(audit), timeout=480)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:] + flink.log_tails()
    accuracy = float(re.search(r"accuracy (\d\.\d+)", out).group(1))
    assert accuracy >= 0.95, out[-2000:]
    hosts = [json.loads((audit / f"host-rank{r}.json").read_text()) for r in (0, 1)]
    assert hosts[0]["hostname"] != hosts[1]["hostname"], hosts
    tm_ips = _tm_addresses(flink)
    assert {h["address"].rsplit(":", 1)[0] for h in hosts} == set(tm_ips), hosts
    weights = [torch.load(audit / f"weights-rank{r}.pt") for r in (0, 1)]
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name
    _assert_clean(flink)


def test_tensorflow_multi_worker_mirrored_with_one_worker_per_host(flink: FlinkHosts,
                                                                    shared: Path) -> None:
    done = flink.submit(ROOT / "examples" / "tf_digits.py", "--workers", "2", "--model-dir",
                        str(shared / "models"), timeout=540)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:] + flink.log_tails()
    (train_job, *_) = job_ids(done.stdout)
    workers = [v for v in flink.job_vertices(train_job)
               if "-worker" in v["vertex"] and "-discard" not in v["vertex"]]
    assert sorted(v["subtask"] for v in workers) == [0, 1], workers
    assert {v["host"] for v in workers} == {"tm1", "tm2"}, workers
    _assert_clean(flink)


def test_training_survives_losing_a_taskmanager_host(flink: FlinkHosts, shared: Path) -> None:
    """Every process of the host that runs worker 1 is killed mid-training: Flink restarts
    the ML cluster on the other host's slots and the workers resume from their
    checkpoints (on the shared volume) to the last step."""
    job_id = uuid.uuid4().hex
    result: dict = {}

    def submit() -> None:
        result["done"] = flink.submit(ROOT / "tests" / "jobs" / "tm_kill_job.py", "--out",
                                      str(shared), "--job-id", job_id, "--steps", "25",
                                      timeout=420)

    client = threading.Thread(target=submit, daemon=True)
    client.start()
    marker = shared / "steps-1"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (marker.exists()
                                               and int(marker.read_text() or 0) >= 3):
        time.sleep(0.5)
    assert marker.exists(), flink.log_tails()
    flink_job = next(j["jid"] for j in flink.jobs() if j["state"] == "RUNNING")
    worker_1 = next(v for v in flink.job_vertices(flink_job)
                    if "-worker" in v["vertex"] and v["subtask"] == 1)
    victim = worker_1["host"]
    assert victim in flink.tms, worker_1
    flink.kill_host_processes(victim)
    killed_at = time.monotonic()
    client.join(timeout=420)
    done = result["done"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + flink.log_tails()
    finals = {p.name: json.loads(p.read_text()) for p in shared.glob("final-*.json")}
    assert sorted(finals) == ["final-0.json", "final-1.json"]
    assert all(f["steps"] == 25 and f["attempt"] >= 1 for f in finals.values()), finals
    resumed = int((shared / f"resume-1-{finals['final-1.json']['attempt']}").read_text())
    assert resumed >= 3, "worker 1 resumed from its checkpoint"
    print(f"{victim} killed -> job finished in {time.monotonic() - killed_at:.1f}s")
    survivor = next(t for t in flink.tms if t != victim)
    deadline = time.monotonic() + 30
    while (left := flink.leftovers(survivor)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], left
    # Bring the host back for whatever runs next on this cluster.
    try:
        flink.restart_tm(victim)
    except RestError as exc:  # reported, the test's own assertions have passed
        pytest.fail(f"could not restart {victim}: {exc}")
