"""Finding and removing what node runners of a job left on this host: entry processes and
node work dirs (named ``flink-dl-<job id>-<attempt>-<role>-<index>-<suffix>``).

The node runner uses it after a restart (``sweep_node_attempts``: leftovers of this node's
earlier attempts); ``flink_dl.flink.janitor`` uses it for a whole job after a cancel.
Only this user's processes and only names of the given job are touched.

Owners: every node work dir holds ``OWNER_FILE``, naming the job and the processes whose
death abandons it (the process that runs the node's operator and, for a job on the
embedded mini-cluster, the client that built it), each as ``(pid, start time)`` so that
a reused pid does not pass for the owner. ``orphaned_work_dirs`` and
``orphaned_processes`` find what jobs whose owner is gone left, with no job id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from flink_dl.settings import NodeIdentity

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
            if NodeIdentity.from_env(proc.environ()).job_id != job_id:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # a node process leads its own group
            killed += 1
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        if name.match(path.name):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return killed, removed


# ---------------------------------------------------------------- owners and orphans
#: A node work dir's record of its job and owners (JSON).
OWNER_FILE = "flink-dl-owner.json"
#: ``NodeIdentity.client`` (``FLINK_DL_CLIENT``): the local client of a job on the embedded
#: mini-cluster, ``<pid>:<start time>``: in the operators' cluster config ``env`` (so in
#: every node process's environment too).

ProcessRef = tuple[int, float]


def process_ref(pid: int | None = None) -> ProcessRef:
    """``(pid, start time)`` of a process (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return pid, psutil.Process(pid).create_time()


def format_ref(ref: ProcessRef) -> str:
    return f"{ref[0]}:{ref[1]!r}"


def parse_ref(text: str | None) -> ProcessRef | None:
    """The ``(pid, start time)`` of ``format_ref``'s text; ``None`` if it is not one."""
    try:
        pid, started = (text or "").split(":", 1)
        return int(pid), float(started)
    except ValueError:
        return None


def is_alive(ref: ProcessRef) -> bool:
    """Whether the process still runs (same pid *and* start time; a zombie is dead)."""
    pid, started = ref
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.05 and \
            proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process with that pid: not ours to judge
        return True


def owners_of(config: Any) -> list[ProcessRef]:
    """The owners of a node of ``config`` run by this process: this process, and the job's
    client when the operators' config names one (``NodeIdentity.client``)."""
    owners = [process_ref()]
    client = parse_ref(NodeIdentity.from_env(config.env).client)
    if client is not None and client[0] != owners[0][0]:
        owners.append(client)
    return owners


def write_owner(work_dir: Path, job_id: str, owners: Sequence[ProcessRef]) -> None:
    """Record (atomically) the job and the owners of a node work dir."""
    record = {"job_id": job_id, "host": socket.gethostname(),
              "owners": [list(ref) for ref in owners]}
    tmp = work_dir / f".{OWNER_FILE}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, work_dir / OWNER_FILE)


def read_owner(work_dir: Path) -> tuple[str, list[ProcessRef]] | None:
    """The job id and owners of a work dir on this host; ``None`` when unknown (no record,
    another host's, unreadable)."""
    try:
        record = json.loads((work_dir / OWNER_FILE).read_text())
        if record.get("host") != socket.gethostname():
            return None
        return str(record["job_id"]), [(int(p), float(t)) for p, t in record["owners"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def orphaned_work_dirs() -> dict[str, list[Path]]:
    """This user's node work dirs (job id -> dirs) whose owner record names a process
    that is gone: their node's operator, or their job's client."""
    found: dict[str, list[Path]] = {}
    for path in Path(tempfile.gettempdir()).glob(f"{WORK_DIR_PREFIX}*"):
        with contextlib.suppress(OSError):
            if not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
        owner = read_owner(path)
        if owner is None:
            continue
        job_id, owners = owner
        if not all(is_alive(ref) for ref in owners):
            found.setdefault(job_id, []).append(path)
    return found


def orphaned_processes(orphan_dirs: Iterable[Path] = ()) -> dict[int, str]:
    """This user's node processes and their descendants (pid -> job id) whose job's client
    (``NodeIdentity.client``) or starting process (``.parent_pid``) is gone, or whose work dir is
    in ``orphan_dirs``."""
    dirs = {str(d) for d in orphan_dirs}
    found: dict[int, str] = {}
    for proc in psutil.process_iter(["pid", "uids", "cmdline"]):
        if proc.pid == os.getpid() or (proc.info["uids"] and
                                        proc.info["uids"].real != os.getuid()):
            continue
        try:
            environ = proc.environ()
        except psutil.Error:
            continue
        identity = NodeIdentity.from_env(environ)
        job_id = identity.job_id
        if job_id is None:
            continue
        cmdline = proc.info.get("cmdline") or []
        client = parse_ref(identity.client)
        parent = identity.parent_pid
        if (("flink_dl.cluster.node_main" in cmdline and cmdline[-1].rstrip("/") in dirs)
                or (client is not None and not is_alive(client))
                or (parent is not None and parent >= 0 and not psutil.pid_exists(parent))):
            found[proc.pid] = job_id
    return found


def kill_orphan(pid: int) -> bool:
    """SIGKILL an orphaned process, with its process group when it leads that group or the
    group's leader (its node process) is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        group = os.getpgid(pid)
        if group != os.getpgrp() and (group == pid or not psutil.pid_exists(group)):
            os.killpg(group, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        return True
    return False
