"""``flink-dl cleanup`` without a job id, after a real client was killed: the killed job's
id is in the client's log, and its leftovers (node work dirs, a node's grandchild
process, its rendezvous scope) are removed, while a live job's are left alone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flink_dl.cli.main import main
from flink_dl.flink.janitor import sweep
from flink_dl.startup.client_env import without_loopback_leftovers

ROOT = Path(__file__).resolve().parents[1]
#: The client's INFO line on submission (flink_dl.flink.job_id).
SUBMITTED = re.compile(r"Flink job (\w+) submitted, running ML cluster 'waiting' \(job_id "
                       r"(\w+)\); if this client is killed, `flink-dl cleanup \2`")


def _start_client(out: Path, rdv: Path, log: Path) -> subprocess.Popen[bytes]:
    out.mkdir()
    env = {**without_loopback_leftovers(), "PYTHONPATH": str(ROOT)}
    env.pop("_python_worker_execution_mode", None)  # loopback: the nodes' operators in it
    with log.open("wb") as sink:
        return subprocess.Popen([sys.executable, str(ROOT / "tests/jobs/waiting_client.py"),
                                 str(out), str(rdv)], stdout=sink, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=env)


def _nodes(out: Path, client: subprocess.Popen[bytes], log: Path) -> list[dict]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = sorted(out.glob("worker-*.json"))
        if len(found) == 2:
            return [json.loads(p.read_text()) for p in found]
        assert client.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"nodes did not start: {log.read_text()[-3000:]}")


def _job_id(log: Path) -> str:
    match = SUBMITTED.search(log.read_text())
    assert match, log.read_text()[-3000:]
    return match.group(2)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cleanup_without_id_removes_a_killed_clients_leftovers_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rdv = tmp_path / "rdv"
    live_log, killed_log = tmp_path / "live.log", tmp_path / "killed.log"
    live = _start_client(tmp_path / "live", rdv, live_log)
    killed = None
    job_ids: list[str] = []
    try:
        live_nodes = _nodes(tmp_path / "live", live, live_log)
        killed = _start_client(tmp_path / "killed", rdv, killed_log)
        killed_nodes = _nodes(tmp_path / "killed", killed, killed_log)
        live_job, killed_job = _job_id(live_log), _job_id(killed_log)
        job_ids = [live_job, killed_job]
        assert (rdv / killed_job).is_dir() and (rdv / live_job).is_dir()

        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        # What the kill leaves: work dirs, the scope, and the nodes' grandchildren (the
        # nodes themselves die with their parent).
        assert all(Path(n["work_dir"]).is_dir() for n in killed_nodes)
        assert all(_alive(n["grandchild"]) for n in killed_nodes)

        assert main(["cleanup", "--rendezvous-dir", str(rdv)]) == 0
        printed = capsys.readouterr().out
        assert f"job {killed_job} (its client is gone)" in printed, printed
        assert live_job not in printed, printed
        deadline = time.monotonic() + 10
        while any(_alive(n["grandchild"]) for n in killed_nodes) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(n["grandchild"]) or _alive(n["pid"]) for n in killed_nodes)
        assert not any(Path(n["work_dir"]).exists() for n in killed_nodes)
        assert not (rdv / killed_job).exists()
        # The live job's: untouched, and it still finishes.
        assert all(Path(n["work_dir"]).is_dir() and _alive(n["pid"]) and
                   _alive(n["grandchild"]) for n in live_nodes)
        assert (rdv / live_job).is_dir()
        (tmp_path / "live" / "release").write_text("")
        assert live.wait(timeout=120) == 0, live_log.read_text()[-3000:]
        assert "client done" in live_log.read_text()
        assert not any(Path(n["work_dir"]).exists() for n in live_nodes)
    finally:
        for client in (live, killed):
            if client is not None and client.poll() is None:
                os.kill(client.pid, signal.SIGKILL)
                client.wait()
        sweep(job_ids, rendezvous_dir=str(rdv))
        for log in (live_log, killed_log):
            for n in (_grandchildren(log)):
                if _alive(n):
                    os.kill(n, signal.SIGKILL)


def _grandchildren(log: Path) -> list[int]:
    out = log.with_suffix("")
    return [json.loads(p.read_text())["grandchild"] for p in out.glob("worker-*.json")]
