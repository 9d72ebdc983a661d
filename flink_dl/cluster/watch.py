"""The node runner's watch loop: heartbeat the AM while the entry runs, handle the AM's
stop, detect a hung entry, and report how the entry ended.

Progress (``timeouts.progress``): the entry's process rewrites its ``progress`` file (rows
read so far) on ``ctx.heartbeat()``, on input read and on output written; a node that
waits on Flink (its input ring empty before the end of input, or its output ring at least
half full) counts as making progress too. Each heartbeat tells the AM the rows read and
the seconds since the last progress, which the AM logs while a node makes none
(``timeouts.status_interval``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flink_dl.cluster.am_client import AMConnection
from flink_dl.cluster.api import ClusterState
from flink_dl.cluster.context import PROGRESS_FILE
from flink_dl.cluster.entry_process import EntryProcess
from flink_dl.config import Timeouts
from flink_dl.errors import (
    ClusterFailedError,
    ControlConnectionError,
    NodeFailedError,
    ProtocolError,
)

log = logging.getLogger(__name__)

_REPORT_ERRORS = (ConnectionError, TimeoutError, OSError, ProtocolError, ClusterFailedError)


def read_progress(work_dir: Path) -> tuple[float, int] | None:
    """(wall-clock time of the entry's last progress, rows read) from its progress file."""
    path = work_dir / PROGRESS_FILE
    try:
        mtime = path.stat().st_mtime
        text = path.read_text()
    except OSError:
        return None
    try:
        rows = int(text.split()[0]) if text.strip() else 0
    except ValueError:
        rows = 0
    return mtime, rows


class NodeWatch:
    """Watches one running entry; ``run()`` returns ``(state, result)`` or raises
    ``NodeFailedError`` (ConnectionError when the AM is gone)."""

    def __init__(self, *, role: str, index: int, job_id: str, attempt: int,
                 timeouts: Timeouts, conn: AMConnection, entry: EntryProcess,
                 waiting_on_flink: Callable[[], str | None] = lambda: None) -> None:
        self.role, self.index = role, index
        self.name = f"{role}:{index}"
        self.job_id, self.attempt = job_id, attempt
        self.timeouts = timeouts
        self.conn = conn
        self.entry = entry
        self.waiting_on_flink = waiting_on_flink
        self._last_progress = time.time()
        self._rows_read = 0

    def run(self) -> tuple[str, Any]:
        conn, entry, timeouts = self.conn, self.entry, self.timeouts
        last_contact = time.monotonic()
        stopping = False
        stop_deadline = math.inf
        first = True
        while True:
            if not first:
                entry.wait(timeouts.heartbeat_interval)
            first = False
            if entry.alive() and time.monotonic() > stop_deadline:
                log.warning("node %s: entry still running %.1fs after the stop "
                            "(timeouts.stop_grace); killing it", self.name, timeouts.stop_grace)
                entry.stop(0)
            if not entry.alive():
                return self._report_exit(stopping)
            waiting = self._update_progress()
            if not stopping:
                self._check_progress()
            try:
                reply = conn.request({
                    "type": "heartbeat", "role": self.role, "index": self.index,
                    "running": True, "rows_read": self._rows_read,
                    "progress_age": round(time.time() - self._last_progress, 1),
                    "waiting": waiting,
                })
                last_contact = time.monotonic()
            except (ConnectionError, TimeoutError, OSError, ProtocolError) as exc:
                if time.monotonic() - last_contact > timeouts.heartbeat_timeout:
                    raise ControlConnectionError(f"no answer from the AM for "
                                                 f"timeouts.heartbeat_timeout="
                                                 f"{timeouts.heartbeat_timeout}s: {exc}") from exc
                continue
            if reply.get("stop") and not stopping:
                stopping = True
                log.info("node %s: AM asked to stop (cluster %s)", self.name, reply.get("state"))
                if reply.get("state") == ClusterState.FAILED.value:
                    entry.stop(timeouts.stop_grace)
                    conn.request({"type": "stopped", "role": self.role, "index": self.index})
                    return "STOPPED", None
                # A graceful stop (e.g. a chief's final export): SIGTERM, then keep the
                # heartbeats going while the entry finishes, up to timeouts.stop_grace.
                entry.terminate()
                stop_deadline = time.monotonic() + timeouts.stop_grace

    def _update_progress(self) -> str | None:
        """Refresh the last progress time and rows read; returns what the node waits on
        Flink for (``"input"``/``"output"``), if it does."""
        progress = read_progress(self.entry.work_dir)
        if progress is not None:
            mtime, self._rows_read = progress
            self._last_progress = max(self._last_progress, mtime)
        waiting = self.waiting_on_flink()
        if waiting is not None:
            self._last_progress = time.time()
        return waiting

    def _check_progress(self) -> None:
        """``timeouts.progress``: fail the node when its entry has been silent too long."""
        limit = self.timeouts.progress
        if limit is None:
            return
        silent = time.time() - self._last_progress
        if silent <= limit:
            return
        error = (f"entry hung: no progress for {silent:.1f}s (timeouts.progress={limit}s; "
                 "call ctx.heartbeat() in long loops without input or output)")
        log.error("node %s: %s", self.name, error)
        self.entry.dump_stacks()
        self.entry.stop(0.5)
        raise self._report_failure(self._failure(error, "", stacks_note=True))

    def _report_exit(self, stopping: bool) -> tuple[str, Any]:
        entry, conn = self.entry, self.conn
        outcome = entry.result()
        status = outcome.get("status")
        if status in ("finished", "stopped") and entry.returncode == 0:
            kind = "stopped" if (status == "stopped" or stopping) else "finished"
            conn.request({"type": kind, "role": self.role, "index": self.index,
                          "result": outcome.get("result")})
            return kind.upper(), outcome.get("result")
        if stopping and status != "failed":
            conn.request({"type": "stopped", "role": self.role, "index": self.index})
            return "STOPPED", None
        traceback = outcome.get("error") or ""
        summary = outcome.get("exception") or entry.describe_exit()
        raise self._report_failure(self._failure(summary, traceback))

    def _report_failure(self, error: NodeFailedError) -> NodeFailedError:
        """Send the node's whole report to the AM (its failure message leads with it: the
        AM's error may reach the user before this node's); returns ``error``."""
        with _suppress_report_errors(self.name):
            self.conn.request({"type": "failed", "role": self.role, "index": self.index,
                               "error": str(error)})
        return error

    def _failure(self, summary: str, traceback: str, stacks_note: bool = False
                 ) -> NodeFailedError:
        """The node's error: a header naming the node, the entry's traceback, then the tail
        of its stderr."""
        tail = self.entry.stderr_tail().rstrip("\n")
        parts = [f"ML node {self.name} (role {self.role!r}, index {self.index}) of job "
                 f"{self.job_id} attempt {self.attempt} failed: {summary}"]
        if traceback:
            parts.append(traceback.rstrip("\n"))
        if tail:
            what = "its stacks at the time, then " if stacks_note else ""
            parts.append(f"--- last lines of the entry's stderr ({what}up to "
                         f"{tail.count(chr(10)) + 1} lines) ---\n{tail}")
        error = NodeFailedError("\n".join(parts))
        error.role, error.index = self.role, self.index  # type: ignore[attr-defined]
        error.entry_traceback = traceback  # type: ignore[attr-defined]
        error.stderr_tail = tail  # type: ignore[attr-defined]
        return error


class _suppress_report_errors:  # noqa: N801 - a context manager used like contextlib's
    """Failure reports are best effort: the AM may be gone already."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        if kind is not None and issubclass(kind, _REPORT_ERRORS):
            log.warning("node %s could not report its failure to the AM: %s", self.name, exc)
            return True
        return False
