"""Integration: real Flink jobs on the local mini-cluster, real node processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import flink_dl
from tests import entries
from tests.leftovers import leftovers, pid_alive, wait_clean


def _read_seen(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def test_six_nodes_agree_on_one_spec(flink_env, tmp_path: Path) -> None:
    config = flink_dl.ClusterConfig(
        roles={"a": 1, "b": 2, "c": 3}, entry=entries.record,
        properties={"out": str(tmp_path)}, env={"TEST_MARKER": "marker-42"},
    )
    flink_dl.add_cluster(flink_env, config)
    flink_dl.execute(flink_env, "six-nodes", timeout_s=180)

    seen = _read_seen(tmp_path)
    assert sorted(seen) == ["a-0", "b-0", "b-1", "c-0", "c-1", "c-2"]
    specs = {json.dumps(s["cluster_spec"], sort_keys=True) for s in seen.values()}
    assert len(specs) == 1, "every node must see the same cluster spec"
    spec = next(iter(seen.values()))["cluster_spec"]
    assert {role: len(addrs) for role, addrs in spec.items()} == {"a": 1, "b": 2, "c": 3}
    addresses = [a for addrs in spec.values() for a in addrs]
    assert len(set(addresses)) == 6
    for key, s in seen.items():
        assert s["job_id"] == config.job_id
        assert s["attempt"] == 0
        assert spec[s["role"]][s["index"]].endswith(f":{s['port']}"), key
        assert s["properties"]["out"] == str(tmp_path)
        assert s["env_marker"] == "marker-42"
        assert s["env_role"] == s["role"]
    assert len({s["pid"] for s in seen.values()}) == 6, "each node runs in its own process"

    assert wait_clean(config.job_id) == {}
    assert not [s["pid"] for s in seen.values() if pid_alive(s["pid"])]
    assert not [s["work_dir"] for s in seen.values() if Path(s["work_dir"]).exists()]


def test_failing_entry_fails_job_with_role_index_and_message(process_env, tmp_path: Path) -> None:
    config = flink_dl.ClusterConfig(
        roles={"a": 1, "b": 2, "c": 3}, entry=entries.boom_on_b1,
        properties={"out": str(tmp_path)},
    )
    flink_dl.add_cluster(process_env, config)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        flink_dl.execute(process_env, "boom", timeout_s=120)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "boom" in message
    assert "ML node b:1" in message and "role 'b', index 1" in message
    assert "ValueError" in message
    assert elapsed < 30, f"job took {elapsed:.1f}s to fail"
    seen = _read_seen(tmp_path)
    assert len(seen) == 6
    left = wait_clean(config.job_id)
    assert not left.get("processes"), left
    assert not [s["pid"] for s in seen.values() if pid_alive(s["pid"])]


def test_daemon_role_is_stopped_gracefully_after_workers(process_env, tmp_path: Path) -> None:
    config = flink_dl.ClusterConfig(
        roles={"worker": 2, "ps": 1}, daemon_roles={"ps"},
        entry=entries.worker_or_daemon, properties={"out": str(tmp_path)},
    )
    flink_dl.add_cluster(process_env, config)
    flink_dl.execute(process_env, "daemon", timeout_s=120)
    assert (tmp_path / "ps-0.stopped").read_text() == "True"
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == ["ps-0", "worker-0", "worker-1"]
    assert wait_clean(config.job_id) == {}


def test_daemon_may_work_after_the_stop_while_heartbeats_go_on(process_env,
                                                              tmp_path: Path) -> None:
    """A stopped daemon that works 4 s (a final export) with heartbeat_timeout=2 s: the
    runner keeps heartbeating until the entry ends, so the job finishes."""
    config = flink_dl.ClusterConfig(
        roles={"worker": 1, "ps": 1}, daemon_roles={"ps"}, entry=entries.worker_or_daemon,
        properties={"out": str(tmp_path), "linger_s": "4"},
        timeouts={"heartbeat_timeout": 2.0, "stop_grace": 30.0})
    flink_dl.add_cluster(process_env, config)
    flink_dl.execute(process_env, "daemon-linger", timeout_s=120)
    assert (tmp_path / "ps-0.stopped").read_text() == "True"
    assert wait_clean(config.job_id) == {}


def test_daemon_error_after_the_stop_fails_the_job(process_env, tmp_path: Path) -> None:
    config = flink_dl.ClusterConfig(
        roles={"worker": 1, "ps": 1}, daemon_roles={"ps"}, entry=entries.worker_or_daemon,
        properties={"out": str(tmp_path), "fail_on_stop": "1"})
    flink_dl.add_cluster(process_env, config)
    with pytest.raises(Exception, match="disk full while exporting"):
        flink_dl.execute(process_env, "daemon-fails", timeout_s=120)
    assert not (tmp_path / "ps-0.stopped").exists()
    assert wait_clean(config.job_id) == {}


def test_cancelled_job_leaves_nothing_behind(flink_env, tmp_path: Path) -> None:
    """A job cancelled on timeout: no node process, work dir, shm or rendezvous file remains
    (in loopback mode PyFlink cannot interrupt the operators' Python threads)."""
    config = flink_dl.ClusterConfig(roles={"worker": 2}, entry=entries.run_forever,
                                    properties={"out": str(tmp_path)})
    flink_dl.add_cluster(flink_env, config)
    with pytest.raises(flink_dl.ClusterTimeoutError, match="did not finish within"):
        flink_dl.execute(flink_env, "cancel", timeout_s=20)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2, "both entries were running when the job was cancelled"
    assert wait_clean(config.job_id) == {}
    assert not [pid for pid in pids if pid_alive(pid)]


def test_cancelled_fed_job_leaves_no_shared_memory(flink_env, tmp_path: Path) -> None:
    """A node fed by an endless source, cancelled by the user: ``cleanup(env)`` leaves no
    process, work dir or shared memory, also in loopback mode, where the cancelled feed
    operator is a thread of this process that PyFlink never closes."""
    from pyflink.table import StreamTableEnvironment

    flink_env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(flink_env)
    t_env.execute_sql("CREATE TEMPORARY TABLE endless (id BIGINT, v DOUBLE) WITH "
                      "('connector'='datagen', 'rows-per-second'='20000')")
    config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=entries.slow_reader)
    flink_dl.add_am_role(flink_env, config)
    flink_dl.add_role(flink_env, config, "worker", t_env.from_path("endless"))
    client = flink_env.execute_async("cancel-fed")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the node runs and its input ring exists
            left = leftovers(config.job_id)
            if left["processes"] and left["shm"]:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the fed node never ran: {leftovers(config.job_id)}")
        time.sleep(2)  # data flowing
    finally:
        client.cancel().result()
    flink_dl.cleanup(flink_env)  # (in process mode the entry may have gone with its worker)
    assert wait_clean(config.job_id) == {}
