"""Unbounded online training a user can account for: ``FTRLLogisticRegression.fit_stream``
counts steps and samples from the job's start across restarts, and publishes a final
version when its input ends (the end of a bounded stream, or Flink's stop with drain)."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from pyflink.common import Configuration, Row, Types
from pyflink.datastream.functions import MapFunction
from pyflink.table import StreamTableEnvironment

import flink_dl
from flink_dl import RestartPolicy
from flink_dl.models.store import ModelStore, ModelVersion
from flink_dl.online import FTRLLogisticRegression
from tests.leftovers import wait_clean
from tests.test_fault_tolerance import (
    _node_processes,
    checkpointed_stream_env,
    completed_checkpoints,
    rate_limited_sequence,
)

BATCH = 16


def versions(model_dir: Path) -> list[ModelVersion]:
    """The versions still in ``model_dir`` (an online learner keeps its newest 10)."""
    return ModelStore(model_dir).versions()


def kill_twice(job_id: str, checkpoints: Path, flink_checkpoints: Path, log: list,
               stop: threading.Event) -> None:
    """SIGKILL the node's entry process, then (after the restart) its Flink Python worker;
    each kill once the attempt has written a training checkpoint and two Flink
    checkpoints completed after it (so the restore resumes from a step > 0)."""
    last = -1
    for kind in ("node-entry", "python-worker"):
        while not stop.is_set():
            procs = _node_processes(job_id)
            newest = max(procs, default=-1)
            if newest > last and procs.get(newest) and \
                    list(checkpoints.glob(f"*/ckpt-*-a{newest:03d}.pt")):
                break
            time.sleep(0.2)
        else:
            return
        first = completed_checkpoints(flink_checkpoints)
        while not stop.is_set() and completed_checkpoints(flink_checkpoints) < first + 2:
            time.sleep(0.1)
        if stop.is_set():
            return
        victim = procs[newest][0]
        pid = victim.ppid() if kind == "python-worker" else victim.pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return
        log.append((kind, newest, pid))
        last = newest


def test_exactly_once_fit_stream_counts_every_sample_once_across_two_kills(
        process_env, tmp_path: Path) -> None:
    """``fit_stream(exactly_once=True)`` on a checkpointed stream of n rows, its node's
    entry and then its Python worker SIGKILLed: the last version (published when the
    input ended) says ``samples`` = n and ``step`` = ceil(n / batch_size), counted from
    the job's start, not from the last restart."""
    n = 4_010  # 251 batches of 16: the last one, partial, trained at the end
    env = process_env
    t_env, flink_checkpoints = checkpointed_stream_env(env, tmp_path / "flink-checkpoints")
    rate_limited_sequence(t_env, n, rows_per_second=120)
    samples = t_env.sql_query(
        f"SELECT CAST(MOD(v, 7) AS DOUBLE) / 7.0 AS x1, CAST(MOD(v, 5) AS DOUBLE) / 5.0 AS "
        f"x2, CAST(MOD(v, 2) AS INT) AS y FROM numbers_{n}_120")
    models = tmp_path / "online"
    learner = FTRLLogisticRegression(["x1", "x2"], "y", model_dir=models, batch_size=BATCH,
                                     export_every_steps=5,
                                     restart=RestartPolicy(attempts=10, delay_s=0.5))
    learner.fit_stream(samples, exactly_once=True)
    kills: list = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_twice, daemon=True, args=(
        learner.config.job_id, models / "checkpoints", flink_checkpoints, kills, stop))
    killer.start()
    try:
        flink_dl.execute(env, "accounting-kills", timeout_s=600)
    finally:
        stop.set()
        killer.join(timeout=5)

    assert [k[0] for k in kills] == ["node-entry", "python-worker"], kills
    published = versions(models)
    final = published[-1]
    assert final.metrics["samples"] == n, [(v.step, v.metrics) for v in published]
    assert final.step == math.ceil(n / BATCH)
    # the last checkpoint (written with the final version) is of a later attempt and
    # keeps the same counts
    newest = sorted((models / "checkpoints").glob("*/ckpt-*.pt"))[-1]
    assert int(newest.name.split("-a")[1].split(".")[0]) >= 2, newest
    checkpoint = torch.load(newest, weights_only=True)
    assert (checkpoint["step"], checkpoint["extra"]) == (final.step, {"samples": n})
    assert wait_clean(learner.config.job_id) == {}


class CountRows(MapFunction):
    """Passes rows on and appends one line per row to a file: how many rows entered."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, runtime_context: Any) -> None:
        self.file = open(self.path, "a")  # noqa: SIM115 - closed in close()

    def map(self, value: Any) -> Any:
        self.file.write("1\n")
        self.file.flush()
        return Row(x1=value[0], x2=value[1], y=value[2])

    def close(self) -> None:
        self.file.close()


@pytest.mark.parametrize("exactly_once", [False, True], ids=["plain", "exactly_once"])
def test_stop_with_drain_publishes_a_final_version_with_every_sample(
        process_env, tmp_path: Path, exactly_once: bool) -> None:
    """An unbounded ``fit_stream`` (a throttled datagen source) stopped with drain through
    the JobClient (``flink_dl.stop_with_drain``: Flink's ``stopWithSavepoint(drain=true)``,
    which PyFlink 2.3's ``stop_with_savepoint`` cannot call): the learner sees the end of its
    input and publishes a final version whose ``samples`` is every row that entered the
    job, and ``step`` the batches they make (the partial last one included); with
    ``exactly_once=True`` too (checkpointing on, the savepoint taken after the final
    version)."""
    env = process_env
    env.set_parallelism(1)
    if exactly_once:
        env.enable_checkpointing(1000)
        env.configure(Configuration().set_string(
            "execution.checkpointing.dir", (tmp_path / "flink-checkpoints").as_uri()))
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql("""
        CREATE TEMPORARY TABLE clicks (x1 DOUBLE, x2 DOUBLE, y INT) WITH (
          'connector' = 'datagen', 'rows-per-second' = '150',
          'fields.x1.min' = '-1', 'fields.x1.max' = '1',
          'fields.x2.min' = '-1', 'fields.x2.max' = '1',
          'fields.y.min' = '0', 'fields.y.max' = '1')""")
    entered = tmp_path / "entered.txt"
    counted = t_env.to_data_stream(t_env.from_path("clicks")).map(
        CountRows(str(entered)),
        output_type=Types.ROW_NAMED(["x1", "x2", "y"],
                                    [Types.DOUBLE(), Types.DOUBLE(), Types.INT()]))
    models = tmp_path / "online"
    learner = FTRLLogisticRegression(["x1", "x2"], "y", model_dir=models, batch_size=BATCH,
                                     export_every_steps=5)
    learner.fit_stream(t_env.from_data_stream(counted), exactly_once=exactly_once)
    client = env.execute_async("accounting-drain")
    store = ModelStore(models)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (store.latest_number() or 0) < 2:
            time.sleep(0.2)
        before = store.latest_number() or 0
        assert before >= 2, "the learner published no versions"
        savepoint = flink_dl.stop_with_drain(client, (tmp_path / "savepoints").as_uri(),
                                             timeout_s=300)
        assert Path(savepoint.removeprefix("file:")).exists()
        assert client.get_job_execution_result().done()
    finally:
        if not client.get_job_execution_result().done():
            client.cancel()
        flink_dl.cleanup(env)

    rows = sum(1 for _ in entered.open())
    published = versions(models)
    final = published[-1]
    assert final.version > before
    assert final.metrics["samples"] == rows, ([(v.step, v.metrics) for v in published], rows)
    assert final.step == math.ceil(rows / BATCH)
    assert wait_clean(learner.config.job_id) == {}
