"""The light loopback launcher: PyFlink's loopback workers start without a Beam process per
slot, jobs give the same results, and only local loopback jobs with the default
interpreter are changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.portability.api import beam_fn_api_pb2
from pyflink.common import Configuration

from flink_dl.startup import loopback_boot, loopback_launcher
from flink_dl.startup.client_env import without_loopback_leftovers

JOBS = """
import json, os, sys, threading, time
import numpy as np, pandas as pd, psutil
import flink_dl
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from flink_dl.inference.api import ModelHandler
from flink_dl.inference.operator import predict
import pyarrow as pa
from flink_dl.cli.demo_entries import describe_node

launchers = set()
def watch():
    me = psutil.Process()
    while True:
        for p in me.children(recursive=True):
            try:
                argv = p.cmdline()
            except psutil.Error:
                continue
            # a Python process only: the light launcher is a shell script whose own command
            # line names beam_boot until it execs loopback_boot
            if not argv or not os.path.basename(argv[0]).startswith("python"):
                continue
            line = " ".join(argv)
            if "beam_boot" in line or "loopback_boot" in line:
                launchers.add((p.pid, "beam" if "beam_boot" in line else "light"))
        time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()

class Doubler(ModelHandler):
    features = ["x"]
    outputs = {"y": pa.float64()}
    batch_size = 64
    def load(self, version): return None
    def run(self, model, columns): return {"y": columns["x"] * 2.0}

env = StreamExecutionEnvironment.get_execution_environment()
config = flink_dl.ClusterConfig(roles={"worker": 2, "ps": 1}, daemon_roles={"ps"},
                                entry=describe_node, name="light")
with flink_dl.add_cluster(env, config).execute_and_collect("light-launcher") as out:
    records = [json.loads(r) for r in out]
am = next(r for r in records if r["kind"] == "am")
t_env = StreamTableEnvironment.create(env)
table = t_env.from_pandas(pd.DataFrame({"x": np.arange(1000, dtype=np.float64)}))
ys = predict(table, Doubler()).to_pandas()["y"]
print("RESULT", json.dumps({"state": am["state"],
      "nodes": sorted(r["state"] for r in records if r["kind"] == "node" and r["role"] == "worker"),
      "sum": float(ys.sum()), "rows": len(ys),
      "launchers": sorted({kind for _, kind in launchers})}))
"""


def _run_jobs(**extra_env: str) -> dict:
    env = {**without_loopback_leftovers(), **extra_env}
    env.pop("_python_worker_execution_mode", None)
    done = subprocess.run([sys.executable, "-c", JOBS], env=env, capture_output=True,
                          text=True, timeout=400, check=False,
                          cwd=str(Path(__file__).resolve().parents[1]))
    # the head keeps the Java exception's message, the tail where the script stopped
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_loopback_jobs_start_their_workers_without_beam_processes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # as after a loopback job in this process: its leftovers must not reach the children
    monkeypatch.setenv("PYFLINK_GATEWAY_DISABLED", "1")
    light = _run_jobs()
    assert light["state"] == "FINISHED" and light["nodes"] == ["FINISHED", "FINISHED"]
    assert light["rows"] == 1000 and light["sum"] == 2.0 * sum(range(1000))
    assert light["launchers"] == ["light"]  # no Beam launcher process at all
    beam = _run_jobs(**{loopback_launcher.SWITCH_ENV: "0"})
    assert {k: v for k, v in beam.items() if k != "launchers"} == \
        {k: v for k, v in light.items() if k != "launchers"}
    assert beam["launchers"] == ["beam"]


def test_start_worker_request_matches_beams_message() -> None:
    params = {"PATH": "/usr/bin", "SEMI_PERSISTENT_DIRECTORY": "/tmp", "é": "ü" * 200}
    payload = loopback_boot.start_worker_request("2-1", "localhost:4567", params)
    parsed = beam_fn_api_pb2.StartWorkerRequest.FromString(payload)
    assert parsed.worker_id == "2-1"
    assert parsed.provision_endpoint.url == "localhost:4567"
    assert dict(parsed.params) == params
    assert not parsed.HasField("control_endpoint")
    failed = beam_fn_api_pb2.StartWorkerResponse(error="no such worker").SerializeToString()
    assert loopback_boot.response_error(failed) == "no such worker"
    assert loopback_boot.response_error(
        beam_fn_api_pb2.StartWorkerResponse().SerializeToString()) == ""


def test_launcher_hands_everything_else_to_the_interpreter(tmp_path: Path) -> None:
    script = loopback_launcher.launcher_for(sys.executable)
    assert script.stat().st_mode & 0o777 == 0o700
    done = subprocess.run([str(script), "-c", "import sys; print(sys.executable, sys.argv[1:])",
                           "a b", "c"], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == f"{sys.executable} ['a b', 'c']"
    # beam_boot without a loopback address (process mode) runs PyFlink's own boot
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_LOOPBACK_SERVER_ADDRESS"}
    done = subprocess.run([str(script), "-m", loopback_launcher.BEAM_BOOT], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "No id provided" in done.stdout + done.stderr


def _local_config(**entries: str) -> Configuration:
    config = Configuration()
    config.set_string("execution.target", "local")
    for key, value in entries.items():
        config.set_string(key, value)
    return config


def test_only_local_loopback_jobs_with_the_default_interpreter_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_python_worker_execution_mode", raising=False)
    monkeypatch.delenv(loopback_launcher.SWITCH_ENV, raising=False)
    config = _local_config()
    assert loopback_launcher.apply(config._j_configuration)
    assert config.get_string("python.executable", "") == \
        str(loopback_launcher.launcher_for(sys.executable))
    config = _local_config(**{"python.executable": sys.executable})
    assert loopback_launcher.apply(config._j_configuration)
    mine = _local_config(**{"python.executable": "/opt/my/python"})
    assert not loopback_launcher.apply(mine._j_configuration)
    assert mine.get_string("python.executable", "") == "/opt/my/python"
    remote = Configuration()
    remote.set_string("execution.target", "remote")
    assert not loopback_launcher.apply(remote._j_configuration)
    monkeypatch.setenv("_python_worker_execution_mode", "process")
    assert not loopback_launcher.apply(_local_config()._j_configuration)
    monkeypatch.delenv("_python_worker_execution_mode")
    monkeypatch.setenv(loopback_launcher.SWITCH_ENV, "0")
    assert not loopback_launcher.apply(_local_config()._j_configuration)
