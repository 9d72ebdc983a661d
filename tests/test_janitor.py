"""The janitor's sweep: only the given job's node work dirs and processes, never another
job's whose id starts the same way."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from flink_dl.cluster.node import WORK_DIR_PREFIX
from flink_dl.flink.janitor import sweep, sweep_node_attempts


def _work_dir(job_id: str, attempt: int, role: str, index: int) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{job_id}-{attempt}-{role}-{index}-"))


def test_sweep_removes_only_the_jobs_own_work_dirs(tmp_path: Path) -> None:
    job = uuid.uuid4().hex[:8]
    mine = [_work_dir(job, 0, "worker", 0), _work_dir(job, 1, "ps-main", 12)]
    others = [_work_dir(f"{job}-eval", 0, "worker", 0), _work_dir(f"{job}-1", 0, "worker", 0),
              _work_dir(f"{job}_x", 0, "worker", 0)]
    try:
        result = sweep([job], rendezvous_dir=str(tmp_path))
        assert result == {"killed": 0, "removed": 2, "released": 0}
        assert not any(d.exists() for d in mine)
        assert all(d.exists() for d in others)
    finally:
        sweep([f"{job}-eval", f"{job}-1", f"{job}_x"], rendezvous_dir=str(tmp_path))
    assert not any(d.exists() for d in others)


def test_sweep_node_attempts_kills_older_attempts_of_that_node_only(tmp_path: Path) -> None:
    job = uuid.uuid4().hex[:8]
    old = _work_dir(job, 0, "worker", 1)
    current = _work_dir(job, 1, "worker", 1)
    sibling = _work_dir(job, 0, "worker", 11)
    # A stand-in node process of attempt 0 (same command line shape as a real one).
    script = "import time; time.sleep(60)"
    env = {**os.environ, "FLINK_DL_JOB_ID": job}
    proc = subprocess.Popen([sys.executable, "-c", script, "-m", "flink_dl.cluster.node_main",
                             str(old)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if sweep_node_attempts(job, "worker", 1, attempt=1):
                break
            time.sleep(0.1)
        assert proc.wait(timeout=10) != 0, "the old attempt's process was killed"
        assert not old.exists()
        assert current.exists() and sibling.exists()
    finally:
        proc.kill()
        sweep([job], rendezvous_dir=str(tmp_path))
