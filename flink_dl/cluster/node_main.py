"""Main of a node's child process: load the entry, call it with a ``NodeContext``, report.

Run as ``python -m flink_dl.cluster.node_main <work_dir>``. Reads ``context.json`` and
``entry.pkl`` (written by the node runner into a private directory: local files only),
writes ``result.json`` with ``{"status": "finished"|"failed"|"stopped", ...}``. On
``SIGUSR1`` it writes every thread's stack to stderr (``faulthandler``).
Exits when the parent closes stdin (the parent is gone). On SIGTERM (the AM's stop) it sets
the stop flag; an entry that never looked at the flag gets ``SystemExit`` so it unwinds.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import cloudpickle

from flink_dl.cluster.context import CONTEXT_FILE, ENTRY_FILE, RESULT_FILE, NodeContext
from flink_dl.cluster.entry_process import STACK_DUMP_SIGNAL
from flink_dl.cluster.prewarm import remap_context, wait_for_work
from flink_dl.cluster.process import die_with_parent
from flink_dl.settings import RuntimeSettings

log = logging.getLogger("flink_dl.node")


class StopRequested(SystemExit):
    """Raised in the entry's main thread when the AM asks the node to stop."""


def _watch_parent() -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)  # parent gone: take the whole group down


def _write_result(work_dir: Path, payload: dict[str, Any]) -> None:
    tmp = work_dir / (RESULT_FILE + ".tmp")
    try:
        text = json.dumps(payload)
    except (TypeError, ValueError):
        payload["result"] = repr(payload.get("result"))
        text = json.dumps(payload)
    tmp.write_text(text)
    os.replace(tmp, work_dir / RESULT_FILE)


def main(argv: list[str]) -> int:
    die_with_parent()
    logging.basicConfig(level=RuntimeSettings.from_env().log_level,
                        format="%(asctime)s %(levelname)s [node %(process)d] %(message)s")
    fds: dict[int, int] = {}
    work_dir = Path(argv[-1])
    if argv[0] == "--prewarm":  # flink_dl.cluster.prewarm: import first, then wait for work
        remap = wait_for_work(int(argv[1]), argv[2], float(argv[3]))
        if remap is None:
            return 0
        fds = remap
    data = json.loads((work_dir / CONTEXT_FILE).read_text())
    if fds:
        data = remap_context(data, fds)
    ctx = NodeContext.from_json(data)
    threading.Thread(target=_watch_parent, name="flink-dl-parent-watch", daemon=True).start()

    def on_sigterm(signum: int, frame: object) -> None:
        if ctx._stop_event.is_set():
            return
        if not ctx.request_stop():
            raise StopRequested(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    # The node runner asks a hung entry where it hangs before it kills it.
    faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True)
    try:
        entry_ref = (work_dir / ENTRY_FILE).read_bytes()
        entry = cloudpickle.loads(entry_ref)
        if isinstance(entry, str):
            from flink_dl.config import resolve_entry

            entry = resolve_entry(entry)
        result = entry(ctx)
        ctx._close_io()
    except StopRequested:
        _write_result(work_dir, {"status": "stopped"})
        return 0
    except BaseException as exc:
        if ctx._stop_event.is_set() and isinstance(exc, SystemExit):
            _write_result(work_dir, {"status": "stopped"})
            return 0
        _write_result(work_dir, {"status": "failed", "error": traceback.format_exc(),
                                 "exception": f"{type(exc).__name__}: {exc}"})
        return 1
    _write_result(work_dir, {"status": "stopped" if ctx._stop_event.is_set() else "finished",
                             "result": result})
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalisation: the stdin watchdog thread is blocked in read().
    os._exit(code)
