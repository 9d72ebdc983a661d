"""Running a Flink job with a deadline (``env.execute`` has none)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from pyflink.datastream import StreamExecutionEnvironment

from flink_dl.errors import ClusterFailedError, ClusterTimeoutError
from flink_dl.flink.failures import flink_dl_error, name_job
from flink_dl.flink.job_id import submission_mark, submissions_since
from flink_dl.flink.pyflink_adapter import j_env_config, j_job_client
from flink_dl.startup import client_logging, quiet_hangup
from flink_dl.startup.client_env import restored_environ

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    wall_s: float
    net_runtime_ms: int | None


def execute(
    env: StreamExecutionEnvironment,
    job_name: str = "flink-dl",
    timeout_s: float | None = None,
    poll_s: float = 0.2,
) -> JobOutcome:
    """Run the job and wait for it; cancel it and raise ``ClusterTimeoutError`` after
    ``timeout_s``. A failed job raises flink-dl's own exception when it carries one
    (``NodeFailedError`` naming the node, with its entry's traceback and stderr tail, or
    ``ClusterFailedError``; ``SlotsUnavailableError`` when the job got no task slots),
    with Flink's error as ``__cause__``; else Flink's error. A local process-mode job that
    restarts gets a Python worker per Python operator (``startup.worker_isolation``).
    After a failure or a cancel, node processes, work dirs and rendezvous files that the
    job's ML clusters left on this host are swept (``flink.janitor``). ``os.environ`` is
    given back as it was found (``startup.client_env.restored_environ``)."""
    with restored_environ():
        return _execute(env, job_name, timeout_s, poll_s)


def _execute(env: StreamExecutionEnvironment, job_name: str, timeout_s: float | None,
             poll_s: float) -> JobOutcome:
    from flink_dl.flink.clusters import cluster_configs_of
    from flink_dl.flink.janitor import sweep
    from flink_dl.flink.planner_threads import install as plan_on_any_thread
    from flink_dl.startup import worker_isolation

    plan_on_any_thread()
    client_logging.install()

    clusters = cluster_configs_of(env)
    worker_isolation.apply(j_env_config(env))
    started = time.monotonic()
    mark = submission_mark()
    client = env.execute_async(job_name)
    job_id = str(client.get_job_id())
    # The ML clusters this job runs (logged by flink.job_id's listener on submission).
    cluster_ids = next((sub.cluster_job_ids for sub in submissions_since(mark)
                        if sub.flink_job_id == job_id), ())
    future = client.get_job_execution_result()
    try:
        while not future.done():
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                quiet_hangup.mark_stopped([job_id, *(c.job_id for c in clusters)])
                try:
                    client.cancel().result()
                    log.error("job %s (%s) ran past its timeout of %ss: cancelled", job_name,
                              job_id, timeout_s)
                except Exception as exc:
                    log.error("job %s (%s) ran past its timeout of %ss; cancelling it "
                              "failed: %s", job_name, job_id, timeout_s, exc)
                raise ClusterTimeoutError(f"job {job_name!r} ({job_id}) did not finish "
                                          f"within timeout_s={timeout_s}")
            time.sleep(poll_s)
        result = future.result()
    except BaseException as exc:
        # Failed or cancelled: sweep what PyFlink gave no chance to clean (this host only).
        for config in clusters:
            sweep([config.job_id], config.rendezvous_dir)
        error = flink_dl_error(exc) if isinstance(exc, Exception) else None
        if error is None:
            raise
        name_job(error, cluster_ids, job_id)
        if error is exc:
            raise
        log.error("job %s (%s) failed: %s", job_name, job_id, str(error).split("\n", 1)[0])
        raise error from exc
    runtime = None
    with contextlib.suppress(Exception):
        runtime = int(result.get_net_runtime())
    wall = time.monotonic() - started
    log.info("job %s (%s) finished in %.1f s", job_name, job_id, wall)
    return JobOutcome(job_id, wall, runtime)


def cleanup(env: StreamExecutionEnvironment) -> dict[str, int]:
    """Sweep what the ML clusters of ``env`` left on this host after a job you cancelled
    yourself (e.g. after ``env.execute_async(...)`` and ``client.cancel()``): node process
    groups, work dirs and rendezvous files, and in loopback mode the shared memory of the
    node operators (threads of this process, which PyFlink never closes on a cancel).
    ``execute`` does this on its own."""
    from flink_dl.flink.clusters import cluster_configs_of
    from flink_dl.flink.janitor import sweep

    totals = {"killed": 0, "removed": 0, "released": 0}
    configs = cluster_configs_of(env)
    # the nodes killed here are the stop, not a failure of the operators still running
    quiet_hangup.mark_stopped(c.job_id for c in configs)
    for config in configs:
        for key, value in sweep([config.job_id], config.rendezvous_dir).items():
            totals[key] += value
    return totals


def stop_with_drain(client: Any, savepoint_dir: str, timeout_s: float | None = 600.0,
                    poll_s: float = 0.2) -> str:
    """Stop a streaming job gracefully and wait until it has finished; returns the path of
    its final savepoint.

    Flink's stop with drain (``flink stop --drain``): the sources stop and emit the final
    watermark, so every operator, and every ML cluster role fed by them, sees the end of
    its input. A ``fit_stream`` learner then trains on what it holds and publishes a final
    version before the job ends. ``client`` is the ``JobClient`` of ``env.execute_async``
    (PyFlink 2.3's own ``JobClient.stop_with_savepoint`` calls a Java method that Flink 2
    no longer has). After ``timeout_s`` the job is cancelled and ``ClusterTimeoutError``
    raised. The savepoint must complete within Flink's checkpoint timeout
    (``execution.checkpointing.timeout``), which includes the learners' final publishing."""
    from pyflink.java_gateway import get_gateway

    started = time.monotonic()
    j_client = j_job_client(client)
    job_id = str(client.get_job_id())
    formats = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType
    stopping = j_client.stopWithSavepoint(True, savepoint_dir, formats.DEFAULT)
    finished = j_client.getJobExecutionResult()
    while not (stopping.isDone() and finished.isDone()):
        if stopping.isCompletedExceptionally():  # the savepoint failed; the job runs on
            try:
                stopping.get()
            except Exception as exc:
                error = ClusterFailedError(f"job {job_id}: stop with drain failed (the job "
                                           f"goes on running): {exc}")
                error.job_id = job_id
                raise error from exc
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            log.error("job %s did not stop with drain within %ss; cancelling it", job_id,
                      timeout_s)
            with contextlib.suppress(Exception):
                client.cancel().result()
            raise ClusterTimeoutError(f"job {job_id}: stop with drain did not complete "
                                      f"within timeout_s={timeout_s}")
        time.sleep(poll_s)
    path = str(stopping.get())
    log.info("job %s stopped with drain; savepoint %s", job_id, path)
    return path
