"""Integration (real Flink jobs on the mini-cluster, real node processes): what the user
sees when a node fails or hangs, progress of daemon nodes, and Flink job ids of several
jobs from one environment."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

import flink_dl
from flink_dl import NodeContext, NodeFailedError
from tests.conftest import execution_mode
from tests.leftovers import wait_clean


def _boom_on_worker_1(ctx: NodeContext) -> None:
    if ctx.index == 1:
        print("worker 1 is about to fail", file=sys.stderr, flush=True)
        raise ValueError("boom from worker 1")
    ctx.wait_for_stop(timeout=120)


def _check_node_error(error: NodeFailedError) -> None:
    message = str(error)
    header, _, rest = message.partition("\n")
    assert header.startswith("ML node worker:1 (role 'worker', index 1) of job "), header
    assert header.endswith("failed: ValueError: boom from worker 1"), header
    # The entry's traceback right after the header, then the tail of its stderr.
    assert rest.startswith("Traceback (most recent call last):"), rest[:200]
    assert rest.index('raise ValueError("boom from worker 1")') < rest.index(
        "--- last lines of the entry's stderr") < rest.index("worker 1 is about to fail")
    assert "\tat " not in message and "org.apache" not in message and "Caused by" not in message
    assert len(message.splitlines()) < 40, message
    assert type(error.__cause__).__name__ == "Py4JJavaError"


def test_execute_raises_the_node_error_not_the_java_trace(process_env, tmp_path: Path) -> None:
    config = flink_dl.ClusterConfig(roles={"worker": 2}, entry=_boom_on_worker_1)
    flink_dl.add_cluster(process_env, config)
    with pytest.raises(NodeFailedError) as info:
        flink_dl.execute(process_env, "boom", timeout_s=120)
    _check_node_error(info.value)
    assert wait_clean(config.job_id) == {}


def test_translate_errors_gives_execute_and_collect_users_the_same(process_env) -> None:
    config = flink_dl.ClusterConfig(roles={"worker": 2}, entry=_boom_on_worker_1)
    outcomes = flink_dl.add_cluster(process_env, config)
    with pytest.raises(NodeFailedError) as info, flink_dl.translate_errors():
        list(outcomes.execute_and_collect())
    _check_node_error(info.value)
    flink_dl.cleanup(process_env)


def _hang_after_reading(ctx: NodeContext) -> None:
    rows = sum(batch.num_rows for batch in ctx.batches())
    print(f"read {rows} rows, now hanging", file=sys.stderr, flush=True)
    time.sleep(600)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_hung_node_is_logged_then_failed_with_its_stack(tmp_path: Path) -> None:
    """The AM logs the silent node's status every status_interval (rows read, seconds
    since its last progress); after timeouts.progress the node fails, and the error shows
    where the entry hung. Loopback mode: the AM logs into this process."""
    from pyflink.table import StreamTableEnvironment

    am_log = logging.getLogger("flink_dl.cluster.am")
    collect, level = _Collect(), am_log.level
    am_log.addHandler(collect)
    am_log.setLevel(logging.INFO)
    with execution_mode("loopback") as env:
        t_env = StreamTableEnvironment.create(env)
        table = t_env.from_elements([(i, float(i)) for i in range(300)], ["id", "x"])
        config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=_hang_after_reading,
                                        timeouts={"progress": 6, "status_interval": 1})
        flink_dl.add_am_role(env, config)
        flink_dl.add_role(env, config, "worker", table)
        started = time.monotonic()
        with pytest.raises(NodeFailedError) as info:
            flink_dl.execute(env, "hang", timeout_s=120)
        elapsed = time.monotonic() - started
    am_log.removeHandler(collect)
    am_log.setLevel(level)
    message = str(info.value)
    assert message.startswith("ML node worker:0 (role 'worker', index 0)")
    assert "entry hung: no progress for" in message and "timeouts.progress=6" in message
    assert "read 300 rows, now hanging" in message
    assert "in _hang_after_reading" in message, message  # the entry's stack, from the tail
    assert elapsed < 60
    statuses = [m for m in collect.messages if "since its last progress" in m]
    assert statuses, collect.messages[-30:]
    assert all(s.startswith("ML node worker:0 (role 'worker', index 0): RUNNING, ")
               for s in statuses), statuses
    assert any("300 rows read" in s for s in statuses), statuses
    ages = [float(s.split(" rows read, ")[1].split("s since")[0]) for s in statuses]
    assert max(ages) >= 3 and ages == sorted(ages), ages
    assert wait_clean(config.job_id) == {}


def _daemons_and_a_busy_worker(ctx: NodeContext) -> None:
    if ctx.role == "ps":
        assert ctx.wait_for_stop(timeout=120)
    elif ctx.role == "poller":
        while not ctx.stop_requested:
            time.sleep(0.2)
    else:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            time.sleep(0.3)
            ctx.heartbeat()


def test_waiting_or_polling_daemons_and_heartbeats_are_progress(process_env) -> None:
    """With timeouts.progress=3 s, daemon nodes that wait 8 s for the AM's stop (in
    ``wait_for_stop`` or polling ``stop_requested``) and a worker that heartbeats are not
    hung: the job finishes."""
    config = flink_dl.ClusterConfig(
        roles={"worker": 1, "ps": 1, "poller": 1}, daemon_roles={"ps", "poller"},
        entry=_daemons_and_a_busy_worker, timeouts={"progress": 3})
    flink_dl.add_cluster(process_env, config)
    flink_dl.execute(process_env, "daemons", timeout_s=120)
    assert wait_clean(config.job_id) == {}


def test_later_jobs_of_the_environment_get_their_own_flink_job_id(process_env,
                                                                  tmp_path: Path) -> None:
    """The job that runs the ML cluster carries its job id; the next ones from the same
    environment do not (a real cluster rejects a second job with the same id)."""
    from pyflink.common.typeinfo import Types
    from pyflink.table import StreamTableEnvironment

    from tests import entries

    config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=entries.record,
                                    properties={"out": str(tmp_path)})
    flink_dl.add_cluster(process_env, config)
    first = flink_dl.execute(process_env, "cluster", timeout_s=120)
    assert first.job_id == config.job_id
    process_env.from_collection([1, 2, 3], type_info=Types.INT()).map(
        lambda x: x * 2, output_type=Types.INT()).print()
    second = process_env.execute("plain").get_job_id()
    t_env = StreamTableEnvironment.create(process_env)
    with t_env.from_elements([(1,), (2,)], ["x"]).execute().collect() as rows:
        assert sorted(r[0] for r in rows) == [1, 2]
    assert str(second) != config.job_id
    assert wait_clean(config.job_id) == {}
