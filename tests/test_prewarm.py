"""Prewarmed rank processes (``flink_dl.cluster.prewarm``): a real two-rank job whose
ranks start from processes spawned when the job was built, and what happens to prewarmed
processes that no node takes."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyflink.table import StreamTableEnvironment

import flink_dl
from flink_dl.cluster import prewarm
from flink_dl.pytorch import TorchConfig, train
from tests import torch_entries
from tests.conftest import execution_mode
from tests.leftovers import wait_clean


def test_prewarmed_ranks_train_in_their_own_work_dir_and_leave_nothing(
        monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(prewarm.ENABLE_ENV, "1")
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.normal(size=(3000, 5)).astype(np.float32),
                         columns=["a", "b", "c", "d", "y"])
    with execution_mode("loopback") as env:
        t_env = StreamTableEnvironment.create(env)
        config = TorchConfig(world_size=2, entry=torch_entries.prewarm_probe, epochs=1,
                             properties={"out": str(tmp_path)},
                             env={"PREWARM_TEST": "from-config"})
        train(env, t_env.from_pandas(frame), config)
        flink_dl.execute(env, "prewarm", timeout_s=240)
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert "--prewarm" in rank["argv"], rank["argv"]       # started ahead of its node
        assert Path(rank["cwd"]).name.startswith(f"flink-dl-{config.job_id}-0-worker-")
        assert rank["argv"][-1] == rank["cwd"]                 # the janitor's name for it
        assert rank["job"] == config.job_id and rank["marker"] == "from-config"
        assert rank["modules_env"] is None                     # the node's final env
    assert sum(r["rows"] for r in ranks) == len(frame)
    assert sum(r["sum"] for r in ranks) == pytest.approx(float(frame["y"].sum()), rel=1e-5)
    assert not wait_clean(config.job_id)


def _wait_pooled(job_id: str, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(key[0] == job_id for key in prewarm._pools) < count:
        assert time.monotonic() < deadline, "prewarmed processes never started"
        time.sleep(0.1)


def test_prewarmed_processes_nobody_takes_are_discarded_or_expire() -> None:
    nodes = [("worker", 0), ("worker", 1)]
    job = f"prewarm-{uuid.uuid4().hex[:8]}"
    prewarm.start(job, nodes, {}, modules=())
    _wait_pooled(job, 2)
    assert len(wait_clean(job, timeout_s=0)["processes"]) == 2  # waiting, in work dirs
    prewarm.discard(job)                                       # what the AM's end does
    assert not wait_clean(job, timeout_s=10)

    expiring = f"prewarm-{uuid.uuid4().hex[:8]}"
    prewarm.start(expiring, nodes, {}, modules=(), wait_s=1.0)
    _wait_pooled(expiring, 2)
    deadline = time.monotonic() + 30
    while any(prewarm._pools[(expiring, *n)].proc.poll() is None for n in nodes):
        assert time.monotonic() < deadline, "a prewarmed process outlived its wait"
        time.sleep(0.2)
    assert prewarm.take(expiring, "worker", 0) is None     # dead: discarded, not handed out
    prewarm.discard(expiring)
    assert not wait_clean(expiring, timeout_s=10)


def test_prewarming_is_off_in_process_mode_and_follows_the_switch(monkeypatch) -> None:
    monkeypatch.setenv(prewarm.ENABLE_ENV, "1")
    monkeypatch.setenv("_python_worker_execution_mode", "process")
    assert not prewarm.enabled(2)           # the node runners live in other processes
    monkeypatch.delenv("_python_worker_execution_mode")
    assert prewarm.enabled(2)
    monkeypatch.setenv(prewarm.ENABLE_ENV, "0")
    assert not prewarm.enabled(2)
    monkeypatch.setenv(prewarm.ENABLE_ENV, "auto")
    assert prewarm.enabled(2) == (len(os.sched_getaffinity(0)) >= 6)
