"""What starting a node's entry process needs: its interpreter, its environment (with the
node's identity) and the tee of its stderr.

The entry's stderr goes through a pipe: ``StderrTail``'s thread copies every chunk to this
process's stderr (so the user's log still gets it) and keeps the last
``STDERR_TAIL_LINES`` lines (at most ``STDERR_TAIL_BYTES``), which a failure report
carries. Used by the entry process supervision (``entry_process``) and by prewarming
(``prewarm``); imports only the settings.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO

from flink_dl.settings import NodeIdentity, RuntimeSettings

STDERR_TAIL_LINES = 50
STDERR_TAIL_BYTES = 8 * 1024


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


def entry_env(config_env: Mapping[str, str], job_id: str, attempt: int, role: str,
              index: int) -> dict[str, str]:
    """The environment of a node's entry process: this process's, the cluster's ``env``,
    the node's identity (``FLINK_DL_*``, which the janitor matches) and this process's
    import path."""
    identity = NodeIdentity(job_id=job_id, attempt=attempt, role=role, index=index)
    return {**os.environ, **config_env, **identity.to_env(),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}


def python_executable() -> str:
    """The interpreter for node processes (``FLINK_DL_NODE_PYTHON`` overrides).

    In PyFlink's thread mode Python is embedded in the JVM, so ``sys.executable`` may not
    be a Python interpreter; fall back to the one of ``sys.prefix``.
    """
    override = RuntimeSettings.from_env().node_python
    if override:
        return override
    if sys.executable and os.path.basename(sys.executable).startswith("python"):
        return sys.executable
    return os.path.join(sys.prefix, "bin", "python3")
