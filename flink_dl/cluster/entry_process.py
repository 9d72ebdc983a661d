"""Supervising a node's entry process: start it, tee its stderr, read how it ended.

The entry's stderr goes through a pipe, teed by ``entry_launch.StderrTail``; its last
lines go into a failure report, in the spirit of torch elastic's error files. The entry's
own traceback comes from ``result.json``, which ``node_main`` writes before it exits.
``dump_stacks()`` asks a live entry for every thread's stack (``faulthandler`` on
``SIGUSR1``, set up by ``node_main``), so a hung entry's report shows where it hung.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flink_dl.cluster.context import RESULT_FILE
from flink_dl.cluster.entry_launch import StderrTail, python_executable
from flink_dl.cluster.process import spawn, stop_process_group, terminate_group

if TYPE_CHECKING:
    from flink_dl.cluster.prewarm import Prewarmed

log = logging.getLogger(__name__)

#: Signal on which ``node_main`` dumps every thread's stack to stderr.
STACK_DUMP_SIGNAL = signal.SIGUSR1
_STDERR_EOF_WAIT_S = 2.0


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
