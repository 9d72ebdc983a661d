"""Finding and removing what node runners of a job left on this host: entry processes and
node work dirs (named ``flink-dl-<job id>-<attempt>-<role>-<index>-<suffix>``).

The node runner uses it after a restart (``sweep_node_attempts``: leftovers of this node's
earlier attempts); ``flink_dl.flink.janitor`` uses it for a whole job after a cancel.
Only this user's processes and only names of the given job are touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

#: Prefix of every node work dir (under the system temp dir).
WORK_DIR_PREFIX = "flink-dl-"
#: The rest of a node work dir's name after ``flink-dl-<job id>-``:
#: ``<attempt>-<role>-<index>-<mkdtemp suffix>``.
SUFFIX = r"[A-Za-z0-9_]+"
ANY_NODE = r"\d+-[A-Za-z][A-Za-z0-9_-]*-\d+-" + SUFFIX


def work_dir_prefix(job_id: str, attempt: int, role: str, index: int) -> str:
    """The ``mkdtemp`` prefix of the work dir of node ``role:index`` of ``job_id``."""
    return f"{WORK_DIR_PREFIX}{job_id}-{attempt}-{role}-{index}-"


def sweep_node_attempts(job_id: str, role: str, index: int, attempt: int) -> int:
    """Kill entry processes and remove work dirs of node ``role:index`` of ``job_id`` left by
    attempts before ``attempt`` (on this host); returns how many things were removed."""
    removed = 0
    for old in range(attempt):
        removed += sum(remove_nodes(job_id, re.escape(f"{old}-{role}-{index}-") + SUFFIX))
    if removed:
        log.warning("node %s:%d attempt %d: removed %d leftover(s) of earlier attempts",
                    role, index, attempt, removed)
    return removed


def remove_nodes(job_id: str, rest: str) -> tuple[int, int]:
    """Kill the process groups of this user's node processes of ``job_id`` whose work dir
    name goes on with the regex ``rest`` after ``flink-dl-<job id>-`` (and whose
    ``FLINK_DL_JOB_ID`` is the job's: job ``a`` never matches job ``a-b``), and remove
    those work dirs; returns (groups killed, dirs removed)."""
    prefix = f"{WORK_DIR_PREFIX}{job_id}-"
    name = re.compile(re.escape(prefix) + rest + "$")
    killed = removed = 0
    for proc in psutil.process_iter(["pid", "cmdline", "uids"]):
        cmdline = proc.info.get("cmdline") or []
        if "flink_dl.cluster.node_main" not in cmdline or not cmdline:
            continue
        if not name.match(os.path.basename(cmdline[-1].rstrip("/"))):
            continue
        if proc.info["uids"] and proc.info["uids"].real != os.getuid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("FLINK_DL_JOB_ID") != job_id:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # a node process leads its own group
            killed += 1
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        if name.match(path.name):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return killed, removed
