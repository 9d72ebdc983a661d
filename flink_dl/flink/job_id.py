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

The same listener logs (INFO, one line) the job ids of the ML clusters a submitted job
runs, with how to clean up after a killed client, and remembers them
(``submissions_since``) so that flink-dl's errors for that job can name them.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment

from flink_dl.flink.pyflink_adapter import j_env

log = logging.getLogger(__name__)

JOB_ID_KEY = "$internal.pipeline.job-id"
_PIN_ATTR = "_flink_dl_job_id_pin"
_FLINK_JOB_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Submission:
    """A submitted job that runs ML clusters: Flink's job id and the clusters' ids."""

    flink_job_id: str
    cluster_job_ids: tuple[str, ...]


_submissions: list[tuple[int, Submission]] = []
_counter = itertools.count(1)
_submissions_lock = threading.Lock()
#: How many submissions are remembered.
_KEEP = 100


def submission_mark() -> int:
    """A mark for ``submissions_since``: the number of the latest submission so far."""
    with _submissions_lock:
        return _submissions[-1][0] if _submissions else 0


def submissions_since(mark: int) -> list[Submission]:
    """The jobs with ML clusters submitted (from any environment) after ``mark``."""
    with _submissions_lock:
        return [sub for number, sub in _submissions if number > mark]


def _record(submission: Submission) -> None:
    with _submissions_lock:
        _submissions.append((next(_counter), submission))
        del _submissions[:-_KEEP]


class _JobIdPin:
    """The pin of one environment; also its Flink ``JobListener`` (through py4j), which
    logs the ids of the ML clusters each submitted job runs."""

    def __init__(self, env: StreamExecutionEnvironment) -> None:
        self._java_env = j_env(env)
        self.pinned: str | None = None
        self.listening = False
        #: (name, job id) of the ML clusters added since the last submission.
        self.clusters: list[tuple[str, str]] = []

    def pin(self, job_id: str, env: StreamExecutionEnvironment) -> bool:
        """Pin ``job_id`` unless a job id is set already (by us or by the user)."""
        if self._conf().toMap().containsKey(JOB_ID_KEY):
            return False
        conf = Configuration()
        conf.set_string(JOB_ID_KEY, job_id)
        env.configure(conf)
        self.pinned = job_id
        self.listen()
        return True

    def listen(self) -> None:
        if not self.listening:
            self._java_env.registerJobListener(self)
            self.listening = True

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
        return self._java_env.getConfiguration()

    # -- org.apache.flink.core.execution.JobListener, called by Flink through py4j --------
    def onJobSubmitted(self, job_client: Any, throwable: Any) -> None:  # noqa: N802
        try:
            self.unpin()
        except Exception:  # never fail Flink's submission from a listener
            log.exception("could not remove the pinned Flink job id")
        clusters, self.clusters = self.clusters, []
        if not clusters or job_client is None or throwable is not None:
            return
        try:
            flink_job_id = str(job_client.getJobID().toString())
            ids = tuple(job_id for _, job_id in clusters)
            _record(Submission(flink_job_id, ids))
            names = ", ".join(f"{name!r} (job_id {job_id})" for name, job_id in clusters)
            log.info("Flink job %s submitted, running ML cluster %s; if this client is killed, "
                     "`flink-dl cleanup %s` (or `flink-dl cleanup`: every job whose client is "
                     "gone) removes what its nodes left on this host", flink_job_id, names,
                     " ".join(ids))
        except Exception:
            log.exception("could not log the submitted job's id")

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


def track_cluster(env: StreamExecutionEnvironment, name: str, job_id: str) -> None:
    """Log ``job_id`` (and remember it for errors) when the next job of ``env`` is
    submitted."""
    pin = _pin_of(env)
    pin.clusters.append((name, job_id))
    pin.listen()


def unpin_job_id(env: StreamExecutionEnvironment) -> None:
    """Take off a job id ``pin_job_id`` set and no submission has used yet."""
    pin = getattr(env, _PIN_ATTR, None)
    if pin is not None:
        pin.unpin()
