"""A job's end is not an error: Beam's echo of Flink hanging up, at DEBUG.

When a streaming job is cancelled, stopped or its ``flink_dl.execute`` timeout cancels it,
Flink closes the gRPC streams of its Python workers (in loopback mode these run in the
client's own process). Beam's SDK harness then reports the hang-up as failures of its own:
its data-plane reader thread logs "Failed to read inputs in the data plane." with the
``StatusCode.CANCELLED "Multiplexer hanging up"`` traceback and dies with it (printed by
``threading.excepthook``), and a bundle still waiting for input raises ``RuntimeError:
Channel closed prematurely``. A user cannot tell a clean stop from a failure.

Beam's harness also *prints* the traceback of a failed instruction to stderr before
logging it. ``install()`` (idempotent; ``worker_tuning.apply``, which flink-dl's operators
call when they open, calls it) turns exactly these into DEBUG lines: a ``CANCELLED`` gRPC
error of Beam's reader thread, Beam's log records whose exception is such an error or the
premature-close ``RuntimeError``, and an instruction that fails with one of them (it still
answers with an error response, without the printed traceback).

The same goes for a flink-dl failure of a job the client stopped (``mark_stopped``:
``flink_dl.cleanup`` after a cancel, ``flink_dl.execute``'s timeout): cleaning up kills
the job's node processes, and the AM and node operators, still running in this process
in loopback mode, would report the killed nodes as a failure. Everything else passes
unchanged. A real failure still surfaces where it belongs: Flink fails the job and
``flink_dl.execute`` raises it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from flink_dl.settings import RuntimeSettings

log = logging.getLogger(__name__)

#: Beam's data-plane reader thread.
READER_THREAD = "read_grpc_client_inputs"
#: Beam's loggers that echo the hang-up.
BEAM_LOGGERS = ("apache_beam.runners.worker.data_plane",
                "apache_beam.runners.worker.sdk_worker",
                "apache_beam.runners.worker.bundle_processor",
                "pyflink.fn_execution.beam.beam_worker_pool_service")
PREMATURE_CLOSE = "Channel closed prematurely"
_installed = False
_lock = threading.Lock()
#: Job ids (ML clusters' and Flink's) their client stopped.
_STOPPED: set[str] = set()


def mark_stopped(job_ids: Iterable[str]) -> None:
    """The client stopped these jobs: a failure their operators raise from now on is the
    stop, not news (see the module docstring)."""
    with _lock:
        _STOPPED.update(str(job_id) for job_id in job_ids if job_id)


def was_stopped(job_id: str) -> bool:
    """Whether the client stopped the job ``job_id`` (``mark_stopped``)."""
    with _lock:
        return job_id in _STOPPED


def of_stopped_job(error: BaseException) -> bool:
    """A flink-dl error that names a job its client stopped."""
    from flink_dl.errors import FlinkDLError

    if not isinstance(error, FlinkDLError):
        return False
    with _lock:
        stopped = set(_STOPPED)
    text = str(error)
    return getattr(error, "job_id", None) in stopped or any(j in text for j in stopped)


def is_hang_up(error: BaseException | None) -> bool:
    """A gRPC ``CANCELLED`` (Flink closed the stream) or Beam's premature-close error."""
    seen = 0
    while error is not None and seen < 8:
        code = getattr(error, "code", None)
        if callable(code):
            try:
                if getattr(code(), "name", None) == "CANCELLED":
                    return True
            except Exception:  # not a gRPC error after all
                pass
        if isinstance(error, RuntimeError) and PREMATURE_CLOSE in str(error):
            return True
        if of_stopped_job(error):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


class HangUpFilter(logging.Filter):
    """Lowers Beam's records of a hang-up to DEBUG (emitted on this module's logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if is_hang_up(error) or (error is None and PREMATURE_CLOSE in record.getMessage()):
            log.debug("the job's end, as Beam saw it: %s: %s", record.name,
                      record.getMessage())
            return False
        return True


def thread_hook(previous: Any) -> Any:
    """A ``threading.excepthook`` that logs the hang-up of Beam's reader thread at DEBUG
    and hands every other exception to ``previous``."""

    def hook(args: Any) -> None:
        thread = getattr(args, "thread", None)
        if thread is not None and thread.name == READER_THREAD and is_hang_up(args.exc_value):
            log.debug("Beam's data-plane reader ended with the job: %s", args.exc_value)
            return
        previous(args)

    return hook


def install() -> None:
    """Install the thread hook and the log filter in this process (once; not with
    ``FLINK_DL_HANGUP_TRACEBACKS=1``)."""
    global _installed
    with _lock:
        if _installed or RuntimeSettings.from_env().hangup_tracebacks:
            return
        threading.excepthook = thread_hook(threading.excepthook)
        for name in BEAM_LOGGERS:
            logging.getLogger(name).addFilter(HangUpFilter())
        _quiet_instructions()
        _installed = True


def _quiet_instructions() -> None:
    """Wrap each instruction of Beam's harness: a hang-up answers with an error response
    (as Beam does) but without Beam's printed traceback."""
    try:
        from apache_beam.portability.api import beam_fn_api_pb2
        from apache_beam.runners.worker.sdk_worker import SdkHarness
    except ImportError:
        return
    original = getattr(SdkHarness, "_execute", None)
    if original is None or getattr(original, "_flink_dl_quiet", False):
        return

    def execute(self: Any, task: Any, request: Any) -> Any:
        def quiet_task() -> Any:
            try:
                return task()
            except Exception as exc:
                if not is_hang_up(exc):
                    raise
                log.debug("instruction %s ended with the job: %s", request.instruction_id, exc)
                return beam_fn_api_pb2.InstructionResponse(
                    instruction_id=request.instruction_id,
                    error=f"the job ended while this instruction ran: {exc}")

        return original(self, quiet_task, request)

    execute._flink_dl_quiet = True  # type: ignore[attr-defined]
    SdkHarness._execute = execute
