"""The README's loop, run as a user runs it, is quiet and keeps its disk bounded: an FTRL
learner publishing a version every 2 samples writes no line per version at INFO, at most
one progress line per node every few seconds, and keeps only its newest versions and
checkpoints; its cancel prints no Beam traceback (``tests/jobs/quiet_loop.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import flink_dl
from flink_dl.models.store import ModelStore
from flink_dl.online.learners import FTRL_KEEP_VERSIONS

ROOT = Path(__file__).resolve().parents[1]


def test_the_loop_logs_little_and_keeps_few_versions(tmp_path: Path) -> None:
    # a user's fresh process: without what an earlier loopback job of this pytest process
    # left in os.environ (PYFLINK_GATEWAY_DISABLED would refuse to start a gateway)
    env = {**flink_dl.without_loopback_leftovers(), "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "tests.jobs.quiet_loop", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = done.stderr.splitlines()
    assert done.returncode == 0, done.stderr[-4000:]
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
    assert not [line for line in lines if "Traceback" in line or "CANCELLED" in line]
    progress = [line for line in lines if "rows read" in line]
    assert progress, "\n".join(lines[-50:])
    assert len(lines) < 100, "\n".join(lines)
    print("\n".join(lines))  # shown with -s: what a user sees
