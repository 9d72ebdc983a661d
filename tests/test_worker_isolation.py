"""A Python worker per Python operator in local process-mode jobs that restart
(``flink_dl.startup.worker_isolation``): which jobs get it, that the builder, ``predict`` and
``execute`` apply it, and that a real job's operators then run in separate workers."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest
from pyflink.common import Configuration
from pyflink.table import DataTypes, StreamTableEnvironment

import flink_dl
from flink_dl.inference.api import ModelHandler
from flink_dl.inference.operator import predict
from flink_dl.startup import worker_isolation
from tests import entries
from tests.conftest import execution_mode
from tests.leftovers import wait_clean

MANAGED = worker_isolation.MANAGED_MEMORY
RESTARTS = {"restart-strategy.type": "fixed-delay"}


def _config(target: str, **options: str) -> Configuration:
    config = Configuration()
    config.set_string("execution.target", target)
    for key, value in options.items():
        config.set_string(key, value)
    return config


def _managed(env) -> str:
    return env._j_stream_execution_environment.getConfiguration().getString(MANAGED, "unset")


@pytest.fixture
def process_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(worker_isolation.SWITCH_ENV, raising=False)
    monkeypatch.setenv("_python_worker_execution_mode", "process")


def test_only_local_process_mode_jobs_get_a_worker_per_operator(
        process_mode, monkeypatch: pytest.MonkeyPatch) -> None:
    local = _config("local", **RESTARTS)
    assert worker_isolation.apply(local._j_configuration)
    assert local.get_string(MANAGED, "") == "false"
    # a real cluster replaces a lost TaskManager, and memory limits matter there
    remote = _config("remote", **RESTARTS)
    assert not worker_isolation.apply(remote._j_configuration)
    assert remote.get_string(MANAGED, "unset") == "unset"
    # loopback: the workers are threads of the client, left as PyFlink has them
    monkeypatch.delenv("_python_worker_execution_mode")
    loopback = _config("local", **RESTARTS)
    assert not worker_isolation.apply(loopback._j_configuration)
    assert loopback.get_string(MANAGED, "unset") == "unset"


def test_only_jobs_that_restart_pay_for_the_extra_workers(process_mode) -> None:
    def restarts(**options: str) -> bool:
        return worker_isolation.restarts(_config("local", **options)._j_configuration)

    assert not restarts()  # Flink's default without checkpointing: no restart
    assert restarts(**{"execution.checkpointing.interval": "1 s"})  # default: restarts
    assert restarts(**RESTARTS)
    assert restarts(**{"restart-strategy": "FixedDelay"})  # the old key, any case
    for never in ("none", "off", "Disable"):
        assert not restarts(**{"restart-strategy.type": never,
                               "execution.checkpointing.interval": "1 s"})
    plain = _config("local")
    assert not worker_isolation.apply(plain._j_configuration)
    assert plain.get_string(MANAGED, "unset") == "unset"
    # the first configuration that sets the strategy wins (a table config over its env's)
    table_config = _config("local", **{"restart-strategy.type": "none"})
    assert not worker_isolation.restarts(table_config._j_configuration,
                                         _config("local", **RESTARTS)._j_configuration)


def test_the_users_own_setting_and_the_switch_are_kept(
        process_mode, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = _config("local", **{MANAGED: "true"}, **RESTARTS)
    assert not worker_isolation.apply(mine._j_configuration)
    assert mine.get_string(MANAGED, "") == "true"
    in_table_config = _config("local", **{MANAGED: "true"})
    env_config = _config("local", **RESTARTS)
    assert not worker_isolation.apply(env_config._j_configuration,
                                      in_table_config._j_configuration)
    assert env_config.get_string(MANAGED, "unset") == "unset"
    monkeypatch.setenv(worker_isolation.SWITCH_ENV, "1")
    shared = _config("local", **RESTARTS)
    assert not worker_isolation.apply(shared._j_configuration)
    assert shared.get_string(MANAGED, "unset") == "unset"


class _Doubler(ModelHandler):
    features = ["x"]
    outputs = {"y": pa.float64()}
    batch_size = 64

    def load(self, version):
        return None

    def run(self, model, columns):
        return {"y": columns["x"] * 2.0}


def test_predict_reads_the_table_config_and_execute_catches_late_checkpointing(
        process_mode) -> None:
    """Checkpointing set in the table config before ``predict``, or on the environment
    after the job was built but before ``flink_dl.execute``: both jobs restart, both get
    a worker per operator (checked before anything runs)."""
    with execution_mode("process") as env:
        t_env = StreamTableEnvironment.create(env)
        t_env.get_config().set("execution.checkpointing.interval", "1 s")
        table = t_env.from_elements([(1.0,)], DataTypes.ROW([DataTypes.FIELD(
            "x", DataTypes.DOUBLE())]))
        predict(table, _Doubler())
        assert _managed(env) == "false"

    class _SubmittedError(Exception):
        pass

    with execution_mode("process") as env:
        config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=entries.record)
        flink_dl.add_cluster(env, config)
        assert _managed(env) == "unset"  # no restart when it was built
        env.enable_checkpointing(1000)

        def submitted(*args, **kwargs):
            raise _SubmittedError()

        env.execute_async = submitted
        with pytest.raises(_SubmittedError):
            flink_dl.execute(env, "never-runs", timeout_s=10)
        assert _managed(env) == "false"


def _python_workers_of_one_slot_job(env) -> set[int]:
    """Run a restartable fed role at parallelism 1 (its Python packing UDF, AM and node
    operators share one slot) and return the pids of every Python worker process seen
    while it ran."""
    import psutil

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
        flink_dl.execute(env, "isolation", timeout_s=180)
    finally:
        done.set()
        watcher.join(timeout=5)
    assert wait_clean(config.job_id) == {}
    return seen


def test_python_operators_of_a_slot_run_in_their_own_workers(process_mode) -> None:
    """A restartable job's Python operators (packing UDF, AM, node) in one slot: a worker
    each by default, one when the job asks for PyFlink's shared worker."""
    with execution_mode("process") as env:
        own = _python_workers_of_one_slot_job(env)
    assert len(own) >= 3, own
    with execution_mode("process") as env:
        env.configure(Configuration().set_string(MANAGED, "true"))
        shared = _python_workers_of_one_slot_job(env)
    assert len(shared) == 1, shared
