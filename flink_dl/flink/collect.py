"""``stream.execute_and_collect()`` in a job with ML clusters runs the whole job.

Why: PyFlink's ``DataStream.execute_and_collect`` first calls
``_apply_chaining_optimization``, i.e. Java's ``PythonOperatorChainingOptimizer.apply(env,
transformation)``, which chains Python operators only along the collected stream's
upstream path *and replaces the environment's list of transformations with that path*.
Every other branch is dropped from the job, with the sinks that keep it there. For an ML
cluster that means: its AM and roles run only when they are upstream of the collected
stream. A role that is not (a second role, or the whole cluster when another stream of
the job is collected) never runs, so the AM waits for nodes that never register, the
nodes that do run never get the cluster spec, and the job fails after
``timeouts.registration`` (or the cluster silently does not run at all). ``env.execute``
does not have the problem: it chains over all transformations
(``PythonOperatorChainingOptimizer.apply(env)``).

:func:`install` wraps ``_apply_chaining_optimization`` so that, for an environment with ML
clusters, the transformations it dropped (those not upstream of the collected stream,
which the path's chaining did not touch) are put back: the job then has every branch, as
Java's ``executeAndCollect`` would have it. Other environments keep PyFlink's behaviour.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pyflink.datastream import DataStream

from flink_dl.flink.clusters import has_clusters
from flink_dl.flink.pyflink_adapter import (
    env_transformations,
    j_env_of_stream,
    transformation_of,
    wrap_chaining_optimization,
)

log = logging.getLogger(__name__)

_lock = threading.Lock()


def install() -> None:
    """Wrap PyFlink's ``DataStream._apply_chaining_optimization`` (idempotent)."""
    with _lock:
        wrap_chaining_optimization(_keeping_other_branches)


def _keeping_other_branches(original: Callable[[DataStream], None]
                            ) -> Callable[[DataStream], None]:
    """``original`` (PyFlink's chaining of a collected stream's path), with the branches it
    drops put back in an environment with ML clusters."""

    def _apply_chaining_optimization(self: DataStream) -> None:
        j_env = j_env_of_stream(self)
        if not has_clusters(j_env):
            original(self)
            return
        before = list(env_transformations(j_env))
        upstream = {t.getId() for t in transformation_of(self).getTransitivePredecessors()}
        original(self)
        kept = {t.getId() for t in env_transformations(j_env)}
        restored = 0
        for transformation in before:
            if transformation.getId() not in upstream and \
                    transformation.getId() not in kept:
                j_env.addOperator(transformation)
                restored += 1
        if restored:
            log.debug("execute_and_collect: kept %d transformation(s) of other branches "
                      "that PyFlink's chaining dropped", restored)

    return _apply_chaining_optimization


