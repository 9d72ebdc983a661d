"""Sweeping what a local job of ML clusters left behind: node processes, work dirs, rendezvous.

Normally every exit path cleans up after itself. This is the safety net for the paths
PyFlink does not give a chance to run: a cancelled job (in loopback mode PyFlink cannot
interrupt Python threads; in process mode it kills the Python worker before ``finally``
blocks run). It only touches this host and this user, and only artifacts named after the
given job ids.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterable
from pathlib import Path

import psutil

from flink_dl.cluster.node import WORK_DIR_PREFIX
from flink_dl.cluster.rendezvous import default_rendezvous_root

log = logging.getLogger(__name__)

#: The rest of a node work dir's name after ``flink-dl-<job id>-``:
#: ``<attempt>-<role>-<index>-<mkdtemp suffix>``.
_SUFFIX = r"[A-Za-z0-9_]+"
_ANY_NODE = r"\d+-[A-Za-z][A-Za-z0-9_-]*-\d+-" + _SUFFIX


def sweep(job_ids: Iterable[str], rendezvous_dir: str | None = None) -> dict[str, int]:
    """Kill node process groups, remove work dirs and rendezvous scopes of ``job_ids``."""
    killed = removed = 0
    for job_id in job_ids:
        groups, dirs = _remove_nodes(job_id, _ANY_NODE)
        killed += groups
        removed += dirs
        root = Path(rendezvous_dir) if rendezvous_dir else default_rendezvous_root()
        scope = root / job_id
        if scope.exists():
            shutil.rmtree(scope, ignore_errors=True)
            removed += 1
    if killed or removed:
        log.warning("cleaned up after the job: %d node process group(s) killed, %d dir(s) "
                    "removed", killed, removed)
    return {"killed": killed, "removed": removed}


def sweep_node_attempts(job_id: str, role: str, index: int, attempt: int) -> int:
    """Kill entry processes and remove work dirs of node ``role:index`` of ``job_id`` left by
    attempts before ``attempt`` (on this host); returns how many things were removed."""
    removed = 0
    for old in range(attempt):
        removed += sum(_remove_nodes(job_id, re.escape(f"{old}-{role}-{index}-") + _SUFFIX))
    if removed:
        log.warning("node %s:%d attempt %d: removed %d leftover(s) of earlier attempts",
                    role, index, attempt, removed)
    return removed


def _remove_nodes(job_id: str, rest: str) -> tuple[int, int]:
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
