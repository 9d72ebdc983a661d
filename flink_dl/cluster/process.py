"""Starting and stopping node child processes without orphans.

Children start in their own session (process group) and with a stdin pipe whose EOF the
child's watchdog treats as "parent gone" (for loopback mode, where the parent outlives the
job). The child itself sets ``PR_SET_PDEATHSIG=SIGKILL`` first thing (``die_with_parent``),
so the kernel kills it if the starting thread dies; doing it in the child instead of a
``preexec_fn`` lets ``subprocess`` use vfork/exec with no Python code between fork and exec
(the parent runs gRPC threads). ``stop_process_group`` sends SIGTERM, waits, then SIGKILLs
the whole group.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from flink_dl.settings import NodeIdentity

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


#: How long to wait for a SIGKILLed process to be reaped.
_KILL_WAIT_S = 30.0


def die_with_parent() -> None:
    """In a child: get SIGKILL when the parent dies; exit now if it already has."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        log.warning("prctl(PR_SET_PDEATHSIG) unavailable; relying on the stdin watchdog")
    expected = NodeIdentity.from_env().parent_pid
    if expected and os.getppid() != expected:
        os._exit(3)  # the parent died before we could register for its death


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    pass_fds: Sequence[int] = (),
    cwd: str | None = None,
    stderr: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a guarded child: own process group, stdin pipe for the watchdog
    (``stderr=subprocess.PIPE`` to read its stderr).

    The child must call ``die_with_parent()`` at start (``node_main`` does).
    """
    return subprocess.Popen(
        list(argv),
        env={**env, **NodeIdentity(parent_pid=os.getpid()).to_env()},
        cwd=cwd,
        stdin=subprocess.PIPE,
        stderr=stderr,
        pass_fds=tuple(pass_fds),
        start_new_session=True,
    )


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """Stop ``proc`` and every process in its group: SIGTERM, ``grace_s`` seconds, SIGKILL."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("process %d did not exit %.1fs after SIGTERM; killing it", proc.pid,
                        grace_s)
    # The leader may be gone while grandchildren of its group live on: always sweep.
    _signal_group(proc, signal.SIGKILL)
    try:
        rc = proc.wait(timeout=_KILL_WAIT_S)
    except subprocess.TimeoutExpired:  # stuck in the kernel (e.g. a hung network write)
        log.error("process %d did not exit %.0fs after SIGKILL; leaving it", proc.pid,
                  _KILL_WAIT_S)
        rc = -signal.SIGKILL
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    return rc


def terminate_group(proc: subprocess.Popen[bytes]) -> None:
    """Send SIGTERM to ``proc``'s process group (a graceful stop; no wait)."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
