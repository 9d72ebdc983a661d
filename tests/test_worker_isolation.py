"""One Python worker per Python operator in restartable process-mode jobs
(``flink_dl.flink.worker_isolation``): which jobs get it, and that a real job's operators
then run in separate workers."""

from __future__ import annotations

import threading
import time

import pytest
from pyflink.common import Configuration
from pyflink.table import DataTypes, StreamTableEnvironment

import flink_dl
from flink_dl.flink import worker_isolation
from tests import entries
from tests.leftovers import wait_clean

MANAGED = worker_isolation.MANAGED_MEMORY


RESTARTS = {"restart-strategy.type": "fixed-delay"}


def _config(target: str, **options: str) -> Configuration:
    config = Configuration()
    config.set_string("execution.target", target)
    for key, value in options.items():
        config.set_string(key, value)
    return config


def test_restartable_process_mode_and_remote_jobs_get_a_worker_per_operator(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(worker_isolation.SWITCH_ENV, raising=False)
    monkeypatch.setenv("_python_worker_execution_mode", "process")
    local = _config("local", **RESTARTS)
    assert worker_isolation.apply(local._j_configuration)
    assert local.get_string(MANAGED, "") == "false"
    monkeypatch.delenv("_python_worker_execution_mode")
    remote = _config("remote", **RESTARTS)
    assert worker_isolation.apply(remote._j_configuration)
    assert remote.get_string(MANAGED, "") == "false"
    # loopback: the workers are threads of the client, left as PyFlink has them
    loopback = _config("local", **RESTARTS)
    assert not worker_isolation.apply(loopback._j_configuration)
    assert loopback.get_string(MANAGED, "unset") == "unset"


def test_only_jobs_that_restart_pay_for_the_extra_workers() -> None:
    def restarts(**options: str) -> bool:
        return worker_isolation.restarts(_config("remote", **options)._j_configuration)

    assert not restarts()  # Flink's default without checkpointing: no restart
    assert restarts(**{"execution.checkpointing.interval": "1 s"})  # default: restarts
    assert restarts(**RESTARTS)
    assert not restarts(**{"restart-strategy.type": "none",
                           "execution.checkpointing.interval": "1 s"})
    plain = _config("remote")
    assert not worker_isolation.apply(plain._j_configuration)
    assert plain.get_string(MANAGED, "unset") == "unset"


def test_the_users_own_setting_and_the_switch_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(worker_isolation.SWITCH_ENV, raising=False)
    mine = _config("remote", **{MANAGED: "true"}, **RESTARTS)
    assert not worker_isolation.apply(mine._j_configuration)
    assert mine.get_string(MANAGED, "") == "true"
    monkeypatch.setenv(worker_isolation.SWITCH_ENV, "1")
    shared = _config("remote", **RESTARTS)
    assert not worker_isolation.apply(shared._j_configuration)
    assert shared.get_string(MANAGED, "unset") == "unset"


def _python_workers_of_one_slot_job(env, shared: bool) -> set[int]:
    """Run a restartable fed role at parallelism 1 (its Python packing UDF, AM and node
    operator share one slot) and return the pids of every Python worker process seen while it ran;
    ``shared``: the job sets PyFlink's shared worker itself."""
    import psutil

    if shared:
        env.configure(Configuration().set_string(MANAGED, "true"))
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    table = t_env.from_elements(
        [(i, i / 4) for i in range(3000)],
        DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT()),
                       DataTypes.FIELD("value", DataTypes.DOUBLE())]))
    config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=entries.numpy_reader,
                                    restart=flink_dl.RestartPolicy(attempts=1))
    flink_dl.add_am_role(env, config)
    flink_dl.add_role(env, config, "worker", table)
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        me = psutil.Process()
        while not done.is_set():
            for p in me.children(recursive=True):
                try:
                    if "pyflink.fn_execution.beam.beam_boot" in " ".join(p.cmdline()):
                        seen.add(p.pid)
                except psutil.Error:
                    continue
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        flink_dl.execute(env, f"isolation-{'shared' if shared else 'own'}", timeout_s=180)
    finally:
        done.set()
        watcher.join(timeout=5)
    assert wait_clean(config.job_id) == {}
    return seen


def test_python_operators_of_a_slot_run_in_their_own_workers(
        process_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restartable job's Python operators (packing, AM, node and the AM's seed) in one
    slot: a worker each by default, one when the job asks for PyFlink's shared worker."""
    monkeypatch.delenv(worker_isolation.SWITCH_ENV, raising=False)
    own = _python_workers_of_one_slot_job(process_env, shared=False)
    assert len(own) >= 3, own
    shared = _python_workers_of_one_slot_job(process_env, shared=True)
    assert len(shared) == 1, shared
