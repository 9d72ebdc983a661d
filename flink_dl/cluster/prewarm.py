"""Entry processes started ahead of their nodes, so that starting the interpreter and
importing the framework (PyTorch: 2-4 s of CPU) overlap Flink's own deployment.

Used where the node runners live in the process that built the job: the embedded
mini-cluster in loopback mode, PyFlink's local default. ``start(job_id, nodes, env,
modules)`` (called when the job is built) spawns, for each node of attempt 0, a process of
``flink_dl.cluster.node_main --prewarm <fd> <modules> <wait_s> <work dir>`` in the node's
own work directory and environment (so the janitor and the restart sweep find it as they
find any entry process): it imports ``modules`` and waits on a socket. The node runner
``take``\\ s its process instead of spawning one: ``launch`` sends the final environment
and the node's descriptors (``SCM_RIGHTS``), and the process carries on as an ordinary
entry process.
What no node takes is discarded when the job's AM ends, and a waiting process exits by
itself after ``wait_s`` seconds. Anything that goes wrong (a process that died, a refused
send) falls back to a fresh spawn in the same work directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from flink_dl.cluster.entry_launch import StderrTail, entry_env, python_executable
from flink_dl.cluster.process import spawn, stop_process_group
from flink_dl.errors import ControlConnectionError, CorruptDataError
from flink_dl.settings import ENV_NAMES, RuntimeSettings

log = logging.getLogger(__name__)

#: ``1``: always prewarm, ``0``: never, ``auto`` (default): where cores are spare
#: (``RuntimeSettings.prewarm``).
ENABLE_ENV = ENV_NAMES["prewarm"]
DEFAULT_WAIT_S = 120.0
_MAX_MESSAGE = 1 << 17

_pools: dict[tuple[str, str, int], Prewarmed] = {}
_lock = threading.Lock()
_queue: queue.Queue[Callable[[], None]] | None = None


class Prewarmed:
    """One waiting entry process, its work dir and the parent's end of its socket."""

    def __init__(self, work_dir: Path, env: Mapping[str, str], modules: Sequence[str],
                 wait_s: float, name: str) -> None:
        self.work_dir = work_dir
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc: subprocess.Popen[bytes] = spawn(
                [python_executable(), "-m", "flink_dl.cluster.node_main", "--prewarm",
                 str(child.fileno()), ",".join(modules), repr(float(wait_s)), str(work_dir)],
                env=env, pass_fds=[child.fileno()], cwd=str(work_dir), stderr=subprocess.PIPE)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.sock = parent
        assert self.proc.stderr is not None  # read from the start: a full pipe would block
        self.stderr = StderrTail(self.proc.stderr, name)

    def launch(self, env: Mapping[str, str],
               fds: Sequence[int]) -> subprocess.Popen[bytes] | None:
        """Hand the process its work; ``None`` if it cannot take it (then it is stopped)."""
        message = json.dumps({"env": dict(env), "fds": list(fds)}).encode()
        try:
            if self.proc.poll() is not None or len(message) > _MAX_MESSAGE:
                raise ControlConnectionError(
                    "the prewarmed process is gone or the message too large")
            socket.send_fds(self.sock, [message], list(fds))
            return self.proc
        except OSError as exc:
            log.info("prewarmed entry process %d not used: %s", self.proc.pid, exc)
            self.stop()
            return None
        finally:
            self.sock.close()

    def stop(self) -> None:
        """Stop the waiting process (its whole group) and close its socket."""
        self.sock.close()
        stop_process_group(self.proc, 1.0)
        self.stderr.wait_eof(1.0)


def enabled(nodes: int) -> bool:
    """Whether to prewarm ``nodes`` entry processes here: never in process mode (the node
    runners live in Flink's Python workers, not here); ``FLINK_DL_PREWARM=1``/``0`` forces
    it on/off; by default (``auto``) only with a spare core per node plus 4 for Flink and
    its Python workers: the imports compete with Flink's deployment for CPU, and on a
    2-core machine prewarming made the digits demo's start-up 2 s slower
    (``python -m bench --only demo``)."""
    if os.environ.get("_python_worker_execution_mode") == "process":
        return False
    forced = RuntimeSettings.from_env().prewarm
    if forced is not None:
        return forced
    return len(os.sched_getaffinity(0)) >= nodes + 4


def start(job_id: str, nodes: Sequence[tuple[str, int]], config_env: Mapping[str, str],
          modules: Sequence[str], wait_s: float = DEFAULT_WAIT_S) -> None:
    """Spawn a prewarmed entry process for each ``(role, index)`` of attempt 0 of
    ``job_id`` (in the background), with the cluster's ``env`` (``config_env``)."""
    def run() -> None:
        for role, index in nodes:
            work_dir = new_work_dir(job_id, 0, role, index)
            node_env = entry_env(config_env, job_id, 0, role, index)
            try:
                waiting = Prewarmed(work_dir, node_env, modules, wait_s, f"{role}:{index}")
            except OSError as exc:
                shutil.rmtree(work_dir, ignore_errors=True)
                log.info("could not prewarm an entry process: %s", exc)
                return
            with _lock:
                _pools[(job_id, role, index)] = waiting
        log.debug("prewarmed %d entry process(es) for job %s", len(nodes), job_id)

    _spawner().put(run)


def _spawner() -> queue.Queue[Callable[[], None]]:
    """The queue of one long-lived thread that spawns every prewarmed process: a child's
    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked it ends, so that thread must
    outlive the processes (it lives as long as this process)."""
    global _queue
    with _lock:
        if _queue is None:
            _queue = queue.Queue()
            threading.Thread(target=_spawn_forever, args=(_queue,), name="flink-dl-prewarm",
                             daemon=True).start()
        return _queue


def _spawn_forever(work: queue.Queue[Callable[[], None]]) -> None:
    while True:
        job = work.get()
        try:
            job()
        except Exception:
            log.exception("prewarming failed")


def take(job_id: str, role: str, index: int) -> Prewarmed | None:
    """The waiting process of node ``role:index`` of ``job_id``, or ``None``."""
    with _lock:
        waiting = _pools.pop((job_id, role, index), None)
    if waiting is not None and waiting.proc.poll() is not None:
        discard_one(waiting)
        return None
    return waiting


def node_work_dir(job_id: str, attempt: int, role: str,
                  index: int) -> tuple[Path, Prewarmed | None]:
    """A node's work dir: its prewarmed process's (attempt 0, when one waits), else new."""
    waiting = take(job_id, role, index) if attempt == 0 else None
    if waiting is not None:
        return waiting.work_dir, waiting
    return new_work_dir(job_id, attempt, role, index), None


def new_work_dir(job_id: str, attempt: int, role: str, index: int) -> Path:
    """A fresh private work dir, named as the janitor and the restart sweep expect."""
    from flink_dl.cluster.leftovers import process_ref, work_dir_prefix, write_owner

    path = Path(tempfile.mkdtemp(prefix=work_dir_prefix(job_id, attempt, role, index)))
    write_owner(path, job_id, [process_ref()])  # the node rewrites it with its own owners
    return path


def discard_one(waiting: Prewarmed) -> None:
    """Stop a process no node will use and remove its work dir."""
    with contextlib.suppress(OSError):
        waiting.stop()
    shutil.rmtree(waiting.work_dir, ignore_errors=True)


def discard(job_id: str) -> None:
    """Stop the processes of ``job_id`` that no node took, and remove their work dirs."""
    with _lock:
        keys = [key for key in _pools if key[0] == job_id]
        left = [_pools.pop(key) for key in keys]
    for waiting in left:
        discard_one(waiting)


def wait_for_work(sock_fd: int, modules: str, wait_s: float) -> dict[int, int] | None:
    """In the prewarmed process: import ``modules`` (comma-separated), then wait (at most
    ``wait_s`` seconds) for the environment and the descriptors; returns the parent's fd ->
    this process's fd, or ``None`` when the work never came (discarded, or ``wait_s``
    passed)."""
    import importlib

    for module in filter(None, modules.split(",")):
        try:
            importlib.import_module(module)
        except Exception:  # the entry imports it again and reports the error there
            log.debug("prewarm import of %s failed", module, exc_info=True)
    sock = socket.socket(fileno=sock_fd)
    sock.settimeout(wait_s)
    try:
        message, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 64)
    except OSError:
        return None
    finally:
        sock.close()
    if not message:
        return None
    order = json.loads(message)
    if len(fds) != len(order["fds"]):
        raise CorruptDataError(f"prewarmed entry: {len(fds)} descriptors arrived, "
                               f"{len(order['fds'])} were sent")
    for name in set(os.environ) - set(order["env"]):
        del os.environ[name]
    os.environ.update(order["env"])
    return dict(zip(order["fds"], fds, strict=True))


def remap_context(data: dict, fds: Mapping[int, int]) -> dict:
    """The node context JSON with the parent's descriptor numbers replaced by ours."""
    if data.get("reserved_fd") is not None:
        data["reserved_fd"] = fds[data["reserved_fd"]]
    channels = data.get("channels") or {}
    for side in ("input", "output"):
        if channels.get(side):
            channels[side] = [fds[fd] for fd in channels[side]]
    return data
