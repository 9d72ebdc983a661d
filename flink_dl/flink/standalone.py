"""A real Flink standalone cluster on localhost, from the scripts shipped in the apache-flink wheel.

Used by the tests (and handy for trying a job the way production runs it): a JobManager
and N TaskManagers as separate JVMs, Python operators in separate worker processes.

    with StandaloneCluster(task_managers=2, slots_per_task_manager=2) as cluster:
        cluster.submit("job.py", "--out", "/tmp/x")
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

from flink_dl.errors import ClusterTimeoutError, FlinkDLError
from flink_dl.startup.client_env import without_loopback_leftovers

log = logging.getLogger(__name__)


def flink_home() -> Path:
    """The Flink distribution inside the installed ``pyflink`` package."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def set_conf_key(conf: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted Flink key (``a.b.c``) in a nested ``config.yaml`` mapping."""
    node = conf
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StandaloneCluster:
    """Start/stop a local standalone Flink cluster with its own conf, log and pid dirs."""

    def __init__(
        self,
        task_managers: int = 2,
        slots_per_task_manager: int = 2,
        task_manager_memory: str = "1280m",
        job_manager_memory: str = "1024m",
        python: str | None = None,
        extra_config: dict[str, Any] | None = None,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.home = flink_home()
        self.task_managers = task_managers
        self.python = python or sys.executable
        self.start_timeout_s = start_timeout_s
        self.base = Path(tempfile.mkdtemp(prefix="flink-dl-standalone-"))
        self.conf_dir = self.base / "conf"
        self.rest_port = _free_port()
        self._config = {
            "jobmanager.rpc.port": _free_port(),
            "jobmanager.memory.process.size": job_manager_memory,
            "taskmanager.numberOfTaskSlots": slots_per_task_manager,
            "taskmanager.memory.process.size": task_manager_memory,
            "rest.port": self.rest_port,
            "rest.bind-port": str(self.rest_port),
            "python.executable": self.python,
            "python.client.executable": self.python,
            **(extra_config or {}),
        }

    @property
    def rest_url(self) -> str:
        return f"http://localhost:{self.rest_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "FLINK_HOME": str(self.home),
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LOG_DIR": str(self.base / "log"),
            "FLINK_PID_DIR": str(self.base / "pids"),
            "PATH": f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}",
        })
        env.pop("_python_worker_execution_mode", None)
        # A local loopback job leaves its Python worker parameters in this process's
        # environment (PyFlink's loopback pool calls os.environ.update); a TaskManager that
        # inherited PYTHON_LOOPBACK_SERVER_ADDRESS would run its Python operators as threads
        # of this process instead of worker processes of its own.
        return without_loopback_leftovers(env)

    def _write_conf(self) -> None:
        shutil.copytree(self.home / "conf", self.conf_dir)
        (self.base / "log").mkdir()
        (self.base / "pids").mkdir()
        path = self.conf_dir / "config.yaml"
        conf = yaml.safe_load(path.read_text()) or {}
        for key, value in self._config.items():
            set_conf_key(conf, key, value)
        path.write_text(yaml.safe_dump(conf))
        (self.conf_dir / "workers").write_text("localhost\n" * self.task_managers)

    def _script(self, name: str) -> list[str]:
        return ["bash", str(self.home / "bin" / name)]

    def start(self) -> StandaloneCluster:
        self._write_conf()
        log.info("starting standalone Flink (%d TMs) in %s", self.task_managers, self.base)
        subprocess.run(self._script("start-cluster.sh"), env=self.env(), check=True,
                       capture_output=True, timeout=self.start_timeout_s)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                overview = self.rest("/overview")
                if overview.get("taskmanagers", 0) >= self.task_managers:
                    return self
            except OSError:
                pass
            time.sleep(1)
        self.stop()
        raise ClusterTimeoutError(f"standalone cluster did not report {self.task_managers} "
                                  f"TaskManagers within {self.start_timeout_s}s")

    def rest(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.rest_url + path, timeout=5) as resp:
            return json.loads(resp.read())

    def submit(self, script: str | Path, *args: str, timeout_s: float = 300,
               extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``flink run -py script args`` against this cluster and wait for it."""
        env = self.env()
        env.update(extra_env or {})
        cmd = [*self._script("flink"), "run", "-m", f"localhost:{self.rest_port}",
               "-py", str(script), *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise FlinkDLError(f"flink run failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                               f"{proc.stderr[-4000:]}")
        return proc

    def processes(self) -> list[psutil.Process]:
        """This cluster's live processes: JobManager, TaskManagers and their Python workers
        (found by the ``FLINK_LOG_DIR`` they all inherit)."""
        log_dir = str(self.base / "log")
        found = []
        for proc in psutil.process_iter(["pid", "uids"]):
            if proc.info["uids"] and proc.info["uids"].real != os.getuid():
                continue
            try:
                if proc.environ().get("FLINK_LOG_DIR") == log_dir:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def stop(self) -> None:
        """Stop the cluster, then kill what ``stop-cluster.sh`` does not know of: Python
        workers orphaned by a killed TaskManager, a TaskManager started by hand."""
        try:
            subprocess.run(self._script("stop-cluster.sh"), env=self.env(), check=False,
                           capture_output=True, timeout=120)
            leftovers = self.processes()
            if leftovers:
                log.warning("standalone cluster %s: killing %d process(es) left after "
                            "stop-cluster.sh: %s", self.base, len(leftovers),
                            [p.pid for p in leftovers])
                for proc in leftovers:
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
                psutil.wait_procs(leftovers, timeout=10)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
