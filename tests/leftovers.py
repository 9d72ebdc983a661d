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


def am_pid(job_id: str, attempt: int = 0) -> int | None:
    """The pid of the Python process hosting the AM of ``job_id``'s ``attempt``, once every
    node has connected (``None`` before): the Python process that listens on the one port
    each of the job's node runners (the parents of its entry processes) is connected to."""
    runners = set()
    for proc in psutil.process_iter(["pid", "ppid"]):
        try:
            environ = proc.environ()
        except (psutil.Error, OSError):
            continue
        if environ.get("FLINK_DL_JOB_ID") == job_id and \
                environ.get("FLINK_DL_ATTEMPT") == str(attempt):
            runners.add(proc.info["ppid"])
    if not runners:
        return None
    dialled = None
    for pid in runners:
        try:
            ports = {c.raddr.port for c in psutil.Process(pid).net_connections("tcp")
                     if c.status == psutil.CONN_ESTABLISHED and c.raddr}
        except psutil.Error:
            return None
        dialled = ports if dialled is None else dialled & ports
    listeners = {}
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid:
            listeners.setdefault(conn.laddr.port, conn.pid)
    for port in sorted(dialled or ()):
        pid = listeners.get(port)
        if pid is not None and "python" in psutil.Process(pid).name():
            return pid
    return None
