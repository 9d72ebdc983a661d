"""Fault injection: restarts of the whole ML cluster, hung entries, exactly-once streams."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import flink_dl
from flink_dl import ClusterConfig, RestartPolicy
from tests import ft_entries
from tests.leftovers import wait_clean


def _attempts(out: Path) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for p in out.glob("attempt-*"):
        _, role, index, attempt = p.name.split("-")
        seen.setdefault(f"{role}-{index}", set()).add(int(attempt))
    return seen


def test_killed_node_restarts_whole_cluster(process_env, tmp_path: Path) -> None:
    """SIGKILL of one node's entry: Flink restarts AM + every node under attempt 1."""
    config = ClusterConfig(roles={"worker": 2}, entry=ft_entries.killed_on_first_attempt,
                           properties={"out": str(tmp_path)},
                           restart=RestartPolicy(attempts=2, delay_s=0.5))
    flink_dl.add_cluster(process_env, config)
    flink_dl.execute(process_env, "restart", timeout_s=180)
    assert _attempts(tmp_path) == {"worker-0": {0, 1}, "worker-1": {0, 1}}
    assert wait_clean(config.job_id) == {}


def test_hung_entry_is_detected(process_env, tmp_path: Path) -> None:
    """timeouts.progress: an entry silent for 3 s fails its node (no restart configured)."""
    config = ClusterConfig(roles={"worker": 1}, entry=ft_entries.hangs,
                           properties={"out": str(tmp_path)}, timeouts={"progress": 3})
    flink_dl.add_cluster(process_env, config)
    started = time.monotonic()
    with pytest.raises(Exception, match="entry hung: no progress"):
        flink_dl.execute(process_env, "hung", timeout_s=120)
    assert time.monotonic() - started < 60
    assert wait_clean(config.job_id) == {}
