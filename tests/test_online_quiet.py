"""The README's loop, run as a user runs it, is quiet and keeps its disk bounded: an FTRL
learner publishing a version every 2 samples writes no line per version at INFO, at most
one progress line per node every few seconds, and keeps only its newest versions and
checkpoints; its cancel and a timeout of ``flink_dl.execute`` print no Python worker
traceback (``tests/jobs/quiet_loop.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import flink_dl
from flink_dl.models.store import ModelStore
from flink_dl.online.learners import FTRL_KEEP_VERSIONS

ROOT = Path(__file__).resolve().parents[1]


def run_loop(work: Path, how: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``tests.jobs.quiet_loop`` in a user's fresh process: without what an earlier
    loopback job of this pytest process left in os.environ (PYFLINK_GATEWAY_DISABLED would
    refuse to start a gateway)."""
    env = {**flink_dl.without_loopback_leftovers(), "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "tests.jobs.quiet_loop", str(work), how],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done, done.stderr.splitlines()


def no_worker_tracebacks(lines: list[str]) -> bool:
    return not [line for line in lines if "Traceback" in line or "CANCELLED" in line
                or "Channel closed prematurely" in line]


def test_the_loop_logs_little_and_keeps_few_versions(tmp_path: Path) -> None:
    done, lines = run_loop(tmp_path, "cancel")
    assert "served 1250 rows" in done.stdout
    online = ModelStore(tmp_path / "online")
    latest = online.open()
    assert latest.metrics["samples"] == 1250 and latest.step == 1250   # batch_size=1
    assert latest.version >= 600                                        # a version per 2 rows
    assert len(online.version_numbers()) <= FTRL_KEEP_VERSIONS
    checkpoints = list((tmp_path / "online" / "checkpoints").rglob("ckpt-*"))
    assert 1 <= len(checkpoints) <= 3, checkpoints
    # at most the batch fit's one version line (its node may end before the line is
    # relayed); none for the ~625 online versions
    assert len([line for line in lines if "published model version" in line]) <= 1
    assert no_worker_tracebacks(lines), "\n".join(lines)
    progress = [line for line in lines if "rows read" in line]
    assert progress, "\n".join(lines[-50:])
    assert len(lines) < 100, "\n".join(lines)
    print("\n".join(lines))  # shown with -s: what a user sees


def test_a_timeout_of_execute_is_quiet_and_says_so(tmp_path: Path) -> None:
    """``flink_dl.execute(env, timeout_s=...)`` on the unbounded loop: the job is cancelled
    at its timeout, one line says so (the client keeps its log handlers while the job's
    loopback workers run: ``startup.client_logging``), ``ClusterTimeoutError`` is raised,
    and no Python worker prints a traceback (the nodes killed by the cleanup after the
    cancel are not reported as a failure)."""
    done, lines = run_loop(tmp_path, "timeout")
    assert "ended: timeout" in done.stdout and "served 1250 rows" in done.stdout
    said = [line for line in lines if "ran past its timeout" in line]
    assert len(said) == 1 and "cancelled" in said[0], "\n".join(lines)
    assert no_worker_tracebacks(lines), "\n".join(lines)
    assert not [line for line in lines if "failed" in line.lower()], "\n".join(lines)
    assert len(lines) < 100, "\n".join(lines)
