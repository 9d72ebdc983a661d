"""Finding what a job left behind: processes, temp dirs, shared memory, rendezvous files."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import psutil

from flink_dl.cluster.rendezvous import default_rendezvous_root


def leftovers(job_id: str) -> dict[str, list[str]]:
    procs = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if job_id in cmd and p.pid != os.getpid():
            procs.append(f"{p.pid}: {cmd}")
    tmp = Path(tempfile.gettempdir())
    temp_dirs = [str(p) for p in tmp.glob(f"flink-dl-{job_id}*")]
    shm = [str(p) for p in Path("/dev/shm").glob(f"*{job_id}*")] if Path("/dev/shm").exists() \
        else []
    shm += memfds(job_id)
    scope = default_rendezvous_root() / job_id
    rendezvous = [str(p) for p in scope.glob("*")] + ([str(scope)] if scope.exists() else [])
    return {"processes": procs, "temp_dirs": temp_dirs, "shm": shm, "rendezvous": rendezvous}


def memfds(job_id: str) -> list[str]:
    """The job's shared memory (memfds named ``flink-dl-<job_id>...``) that any process
    still holds, through an open descriptor (/proc/<pid>/fd) or a mapping whose
    descriptor may be closed already (/proc/<pid>/maps). Memfds never appear in
    /dev/shm."""
    marker = f"memfd:flink-dl-{job_id}"
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fds = list((proc / "fd").iterdir())
            maps = (proc / "maps").read_text().splitlines()
        except OSError:  # gone, or not ours
            continue
        for fd in fds:
            try:  # one descriptor may close while we look (e.g. the one listing the dir)
                target = os.readlink(fd)
            except OSError:
                continue
            if marker in target:
                found.append(f"{fd} -> {target}")
        found += sorted({f"{proc}/maps: {line.split(None, 5)[-1]}" for line in maps
                         if marker in line})
    return found


def wait_clean(job_id: str, timeout_s: float = 20.0) -> dict[str, list[str]]:
    """Poll until nothing of ``job_id`` is left (or the timeout); return what is left."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = {k: v for k, v in leftovers(job_id).items() if v}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
