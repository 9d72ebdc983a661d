"""A job's end, as Beam's harness sees it, prints no traceback: Flink's hang-up (gRPC
CANCELLED, "Channel closed prematurely") becomes DEBUG; every other error is untouched."""

from __future__ import annotations

import logging
import queue
from types import SimpleNamespace

import grpc
import pytest
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.worker.sdk_worker import SdkHarness

from flink_dl.startup import quiet_hangup


class Cancelled(grpc.RpcError):
    """What Beam's reader sees when Flink closes the data stream."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED

    def __str__(self) -> str:
        return 'StatusCode.CANCELLED "Multiplexer hanging up"'


class Unavailable(Cancelled):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


@pytest.fixture(autouse=True)
def installed() -> None:
    quiet_hangup.install()


def test_what_counts_as_a_hang_up() -> None:
    assert quiet_hangup.is_hang_up(Cancelled())
    assert quiet_hangup.is_hang_up(RuntimeError("Channel closed prematurely."))
    wrapped = ValueError("bundle failed")
    wrapped.__cause__ = Cancelled()
    assert quiet_hangup.is_hang_up(wrapped)
    assert not quiet_hangup.is_hang_up(Unavailable())
    assert not quiet_hangup.is_hang_up(RuntimeError("boom"))
    assert not quiet_hangup.is_hang_up(None)


def test_the_reader_threads_hang_up_is_quiet_other_thread_errors_pass() -> None:
    passed: list[object] = []
    hook = quiet_hangup.thread_hook(passed.append)
    reader = SimpleNamespace(name=quiet_hangup.READER_THREAD)
    other = SimpleNamespace(name="some-user-thread")
    hook(SimpleNamespace(thread=reader, exc_value=Cancelled()))
    assert passed == []
    for args in (SimpleNamespace(thread=reader, exc_value=Unavailable()),
                 SimpleNamespace(thread=other, exc_value=Cancelled())):
        hook(args)
        assert passed[-1] is args
    assert len(passed) == 2


def test_beams_log_records_of_a_hang_up_go_to_debug(caplog) -> None:
    beam = logging.getLogger("apache_beam.runners.worker.data_plane")
    with caplog.at_level(logging.DEBUG):
        try:
            raise Cancelled()
        except Cancelled:
            beam.exception("Failed to read inputs in the data plane.")
        try:
            raise RuntimeError("disk full")
        except RuntimeError:
            beam.exception("Failed to read inputs in the data plane.")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "disk full" in str(errors[0].exc_info[1])
    assert any(r.levelno == logging.DEBUG and r.name == quiet_hangup.__name__
               for r in caplog.records)


def test_an_instruction_ended_by_the_hang_up_answers_without_a_printed_traceback(
        capsys) -> None:
    harness = SimpleNamespace(_responses=queue.Queue())
    request = beam_fn_api_pb2.InstructionRequest(instruction_id="bundle-7")

    def cut_off() -> None:
        raise RuntimeError("Channel closed prematurely.")

    SdkHarness._execute(harness, cut_off, request)
    response = harness._responses.get_nowait()
    assert response.instruction_id == "bundle-7" and "ended" in response.error
    assert capsys.readouterr().err == ""

    def fails() -> None:
        raise ValueError("a real bug")

    SdkHarness._execute(harness, fails, request)
    response = harness._responses.get_nowait()
    assert "a real bug" in response.error
    assert "a real bug" in capsys.readouterr().err  # Beam's own print, unchanged


def test_a_failure_of_a_job_its_client_stopped_is_the_stop() -> None:
    """After ``mark_stopped`` (``flink_dl.cleanup`` after a cancel, ``execute``'s
    timeout), flink-dl's error naming that job (the AM reporting the nodes cleanup
    killed) counts as the job's end; the same error of another job, or another error type
    naming it, does not."""
    from flink_dl.errors import ClusterNodeFailedError, NodeFailedError

    killed = ClusterNodeFailedError("ML node worker:0 (role 'worker', index 0) of job "
                                    "c0ffee01 attempt 0 failed: entry process killed by "
                                    "signal 9")
    other = NodeFailedError("ML node worker:0 of job beef0002 attempt 0 failed")
    assert not quiet_hangup.is_hang_up(killed)
    quiet_hangup.mark_stopped(["c0ffee01", ""])
    assert quiet_hangup.is_hang_up(killed)
    assert not quiet_hangup.is_hang_up(RuntimeError("task failed"))
    wrapped = RuntimeError("operator failed")
    wrapped.__cause__ = killed
    assert quiet_hangup.is_hang_up(wrapped)
    assert not quiet_hangup.is_hang_up(other)
    assert not quiet_hangup.is_hang_up(ValueError("of job c0ffee01"))
    named = NodeFailedError("failed")
    named.job_id = "c0ffee01"
    assert quiet_hangup.is_hang_up(named)
