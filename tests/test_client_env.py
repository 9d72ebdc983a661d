"""After a local (loopback) job, flink-dl gives the client's ``os.environ`` back as it found
it: PyFlink's loopback pool leaves ``PYFLINK_GATEWAY_DISABLED`` and others there, and a
Python process started afterwards that runs a PyFlink job of its own died with "job codes
are in the top level of the script"."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from pyflink.common import Types

import flink_dl
from flink_dl.startup.client_env import LOOPBACK_LEFTOVERS
from tests.conftest import execution_mode

CHILD_JOB = """
import sys

from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment

env = StreamExecutionEnvironment.get_execution_environment()
env.set_parallelism(1)
env.set_python_executable(sys.executable)
stream = env.from_collection([1, 2, 3], type_info=Types.INT())
with stream.map(lambda x: x * 10, output_type=Types.INT()).execute_and_collect() as rows:
    print("child rows", sorted(rows))
"""


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process's environment without what earlier loopback jobs of the session
    (run without flink-dl) left in it."""
    for key in LOOPBACK_LEFTOVERS:
        monkeypatch.delenv(key, raising=False)


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def _child_job() -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD_JOB], capture_output=True, text=True,
                          timeout=300)


def _index(ctx: flink_dl.NodeContext) -> dict:
    return {"index": ctx.index}


def test_execute_restores_the_environment_for_child_pyflink_jobs(clean_environ) -> None:
    with execution_mode("loopback") as env:
        flink_dl.add_cluster(env, flink_dl.ClusterConfig(roles={"worker": 1}, entry=_index))
        found = _environ()
        flink_dl.execute(env, "environ", timeout_s=300)
        assert _environ() == found
    child = _child_job()
    assert child.returncode == 0, child.stderr[-3000:]
    assert "child rows [10, 20, 30]" in child.stdout


def test_translate_errors_restores_the_environment(clean_environ) -> None:
    with execution_mode("loopback") as env:
        env.set_python_executable(sys.executable)
        doubled = env.from_collection([1, 2], type_info=Types.INT()).map(
            lambda x: 2 * x, output_type=Types.INT())
        found = _environ()
        with flink_dl.translate_errors():
            with doubled.execute_and_collect() as rows:
                assert sorted(rows) == [2, 4]
            assert os.environ.get("PYFLINK_GATEWAY_DISABLED"), "the loopback job set it"
        assert _environ() == found
    # Code that keeps the leftovers (its own env.execute) starts children without them.
    child_env = flink_dl.without_loopback_leftovers(
        {**os.environ, "PYFLINK_GATEWAY_DISABLED": "true"})
    assert "PYFLINK_GATEWAY_DISABLED" not in child_env


def test_nested_and_concurrent_uses_restore_once_to_the_first_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLINK_DL_TEST_A", raising=False)
    monkeypatch.delenv("FLINK_DL_TEST_B", raising=False)
    entered, release = threading.Event(), threading.Event()

    def other_job() -> None:
        with flink_dl.restored_environ():
            os.environ["FLINK_DL_TEST_B"] = "b"
            entered.set()
            release.wait(10)

    with flink_dl.restored_environ():
        os.environ["FLINK_DL_TEST_A"] = "a"
        thread = threading.Thread(target=other_job)
        thread.start()
        assert entered.wait(10)
    # The other job still runs: nothing restored yet.
    assert os.environ.get("FLINK_DL_TEST_A") == "a"
    release.set()
    thread.join(10)
    assert "FLINK_DL_TEST_A" not in os.environ and "FLINK_DL_TEST_B" not in os.environ
