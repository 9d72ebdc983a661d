"""Supervising a node's entry process: start it, tee its stderr, read how it ended.

The entry's stderr goes through a pipe: a thread copies every chunk to this process's
stderr (so the user's log still gets it) and keeps the last ``STDERR_TAIL_LINES`` lines
(at most ``STDERR_TAIL_BYTES``), which a failure report carries, in the spirit of torch
elastic's error files. The entry's own traceback comes from ``result.json``, which
``node_main`` writes before it exits. ``dump_stacks()`` asks a live entry for every
thread's stack (``faulthandler`` on ``SIGUSR1``, set up by ``node_main``), so a hung
entry's report shows where it hung.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from flink_dl.cluster.context import RESULT_FILE
from flink_dl.cluster.process import spawn, stop_process_group, terminate_group

if TYPE_CHECKING:
    from flink_dl.cluster.prewarm import Prewarmed

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 50
STDERR_TAIL_BYTES = 8 * 1024
#: Signal on which ``node_main`` dumps every thread's stack to stderr.
STACK_DUMP_SIGNAL = signal.SIGUSR1
_STDERR_EOF_WAIT_S = 2.0


class StderrTail:
    """Copies a pipe to this process's stderr and keeps its last lines."""

    def __init__(self, pipe: IO[bytes], name: str, lines: int = STDERR_TAIL_LINES,
                 max_bytes: int = STDERR_TAIL_BYTES) -> None:
        self._pipe = pipe
        self._lines: collections.deque[bytes] = collections.deque(maxlen=lines)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._last_data = time.monotonic()
        self._thread = threading.Thread(target=self._pump, daemon=True,
                                        name=f"flink-dl-stderr-{name}")
        self._thread.start()

    def _pump(self) -> None:
        try:
            for line in iter(self._pipe.readline, b""):
                with contextlib.suppress(OSError):
                    os.write(2, line)
                with self._lock:
                    self._lines.append(line)
                    self._last_data = time.monotonic()
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self._pipe.close()

    def wait_eof(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the writers to close the pipe."""
        self._thread.join(timeout)

    def wait_quiet(self, quiet_s: float, timeout: float, since: float | None = None) -> None:
        """Wait until nothing arrived for ``quiet_s`` seconds (at most ``timeout`` s); with
        ``since`` (a ``time.monotonic()``), first until something arrived after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            with self._lock:
                last = self._last_data
            idle = time.monotonic() - last
            if idle >= quiet_s and (since is None or last > since):
                return
            time.sleep(0.05 if since is not None and last <= since
                       else min(quiet_s - idle, 0.05) + 0.01)

    def text(self) -> str:
        """The kept tail, at most ``max_bytes`` (whole lines where possible)."""
        with self._lock:
            lines = list(self._lines)
        kept: list[bytes] = []
        size = 0
        for line in reversed(lines):
            if size + len(line) > self._max_bytes:
                if not kept:
                    kept.append(line[-self._max_bytes:])
                break
            kept.append(line)
            size += len(line)
        return b"".join(reversed(kept)).decode("utf-8", "replace")


class EntryProcess:
    """One entry process of a node: see the module docstring."""

    def __init__(self, name: str, work_dir: Path, env: Mapping[str, str],
                 pass_fds: Sequence[int], prewarmed: Prewarmed | None = None) -> None:
        """Start the entry; with ``prewarmed``, hand the work to that waiting process
        (``flink_dl.cluster.prewarm``), or spawn one if it cannot take it."""
        self.name = name
        self.work_dir = work_dir
        proc = prewarmed.launch(env, pass_fds) if prewarmed is not None else None
        self.prewarmed = proc is not None
        self.proc: subprocess.Popen[bytes] = proc or spawn(
            [python_executable(), "-m", "flink_dl.cluster.node_main", str(work_dir)],
            env=env, pass_fds=pass_fds, cwd=str(work_dir), stderr=subprocess.PIPE)
        if proc is not None:
            self.stderr = prewarmed.stderr  # type: ignore[union-attr]  # read since its start
        else:
            assert self.proc.stderr is not None
            self.stderr = StderrTail(self.proc.stderr, name)
        log.info("node %s started entry process %d%s", name, self.proc.pid,
                 " (prewarmed)" if self.prewarmed else "")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the entry to exit."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)

    def terminate(self) -> None:
        """SIGTERM the entry's process group (a graceful stop; no wait)."""
        terminate_group(self.proc)

    def stop(self, grace_s: float) -> None:
        """SIGTERM, ``grace_s`` seconds, SIGKILL the whole process group."""
        stop_process_group(self.proc, grace_s)

    def dump_stacks(self, timeout: float = 2.0) -> None:
        """Have a live entry write every thread's stack to its stderr (into the tail)."""
        if not self.alive():
            return
        sent = time.monotonic()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.proc.pid, STACK_DUMP_SIGNAL)
            # The dump is written by the entry's process: wait for it to arrive (and end)
            # before anything else (a SIGTERM) can move the entry away from where it hangs.
            self.stderr.wait_quiet(0.3, timeout, since=sent)

    def result(self) -> dict[str, Any]:
        """What ``node_main`` wrote to ``result.json`` (``{}`` when it wrote nothing)."""
        try:
            return json.loads((self.work_dir / RESULT_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def stderr_tail(self) -> str:
        """The entry's last stderr lines, after its writers closed the pipe (or a short
        wait: grandchildren may hold it)."""
        self.stderr.wait_eof(_STDERR_EOF_WAIT_S if not self.alive() else 0)
        return self.stderr.text()

    def describe_exit(self) -> str:
        returncode = self.proc.returncode
        if returncode is not None and returncode < 0:
            return f"entry process killed by signal {-returncode}"
        return f"entry process exited with code {returncode} and no result"


def entry_env(config_env: Mapping[str, str], job_id: str, attempt: int, role: str,
              index: int) -> dict[str, str]:
    """The environment of a node's entry process: this process's, the cluster's ``env``,
    the node's identity (``FLINK_DL_*``, which the janitor matches) and this process's
    import path."""
    return {**os.environ, **config_env, "FLINK_DL_JOB_ID": job_id,
            "FLINK_DL_ATTEMPT": str(attempt), "FLINK_DL_ROLE": role,
            "FLINK_DL_INDEX": str(index),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}


def python_executable() -> str:
    """The interpreter for node processes (``FLINK_DL_NODE_PYTHON`` overrides).

    In PyFlink's thread mode Python is embedded in the JVM, so ``sys.executable`` may not
    be a Python interpreter; fall back to the one of ``sys.prefix``.
    """
    override = os.environ.get("FLINK_DL_NODE_PYTHON")
    if override:
        return override
    if sys.executable and os.path.basename(sys.executable).startswith("python"):
        return sys.executable
    return os.path.join(sys.prefix, "bin", "python3")
