"""Flink's job id = the ML cluster's job id, for the one job that runs the cluster.

Pinning ``$internal.pipeline.job-id`` makes the Flink job that runs an ML cluster carry the
cluster's ``job_id``: the id the Flink UI and ``flink list`` show is the one
``flink-dl cleanup <job_id>`` takes, and logs of both sides match. The key lives in the
environment's configuration, so left there it would give *every* later job of the same
environment that id too (e.g. ``predict(...).to_pandas()`` after ``train``), which a real
cluster rejects (``DuplicateApplicationSubmissionException``; the mini-cluster of a local
run does not check). So the pin is taken off as soon as a job is submitted: a Flink
``JobListener`` registered on the environment removes it on ``onJobSubmitted``, whichever
way the job was started (``env.execute``, ``execute_async``, ``execute_and_collect``, a
Table job of a ``StreamTableEnvironment`` over ``env``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment

log = logging.getLogger(__name__)

JOB_ID_KEY = "$internal.pipeline.job-id"
_PIN_ATTR = "_flink_dl_job_id_pin"
_FLINK_JOB_ID = re.compile(r"[0-9a-f]{32}")


class _JobIdPin:
    """The pin of one environment; also its Flink ``JobListener`` (through py4j)."""

    def __init__(self, env: StreamExecutionEnvironment) -> None:
        self._j_env = env._j_stream_execution_environment
        self.pinned: str | None = None
        self.listening = False

    def pin(self, job_id: str, env: StreamExecutionEnvironment) -> bool:
        """Pin ``job_id`` unless a job id is set already (by us or by the user)."""
        if self._conf().toMap().containsKey(JOB_ID_KEY):
            return False
        conf = Configuration()
        conf.set_string(JOB_ID_KEY, job_id)
        env.configure(conf)
        self.pinned = job_id
        if not self.listening:
            self._j_env.registerJobListener(self)
            self.listening = True
        return True

    def unpin(self) -> None:
        """Remove the pin if it is still ours (a value the user set stays)."""
        pinned, self.pinned = self.pinned, None
        if pinned is None:
            return
        conf = self._conf()
        if conf.toMap().get(JOB_ID_KEY) == pinned:
            conf.removeKey(JOB_ID_KEY)
            log.debug("unpinned Flink job id %s after its submission", pinned)

    def _conf(self) -> Any:
        return self._j_env.getConfiguration()

    # -- org.apache.flink.core.execution.JobListener, called by Flink through py4j --------
    def onJobSubmitted(self, job_client: Any, throwable: Any) -> None:  # noqa: N802
        try:
            self.unpin()
        except Exception:  # never fail Flink's submission from a listener
            log.exception("could not remove the pinned Flink job id")

    def onJobExecuted(self, result: Any, throwable: Any) -> None:  # noqa: N802
        return None

    class Java:
        implements = ["org.apache.flink.core.execution.JobListener"]


def _pin_of(env: StreamExecutionEnvironment) -> _JobIdPin:
    pin = getattr(env, _PIN_ATTR, None)
    if pin is None:
        pin = _JobIdPin(env)
        setattr(env, _PIN_ATTR, pin)
    return pin


def pin_job_id(env: StreamExecutionEnvironment, job_id: str) -> bool:
    """Give the next job submitted from ``env`` the Flink job id ``job_id`` (when it is a
    valid Flink JobID: 32 hex digits, like the default ``ClusterConfig.job_id``, and no
    job id is set yet); returns whether it did. Taken off again when that job is
    submitted."""
    if not _FLINK_JOB_ID.fullmatch(job_id):
        return False
    return _pin_of(env).pin(job_id, env)


def unpin_job_id(env: StreamExecutionEnvironment) -> None:
    """Take off a job id ``pin_job_id`` set and no submission has used yet."""
    pin = getattr(env, _PIN_ATTR, None)
    if pin is not None:
        pin.unpin()
