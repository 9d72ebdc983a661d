"""Sweeping what a local job of ML clusters left behind: node processes, work dirs, rendezvous.

Normally every exit path cleans up after itself. This is the safety net for the paths
PyFlink does not give a chance to run: a cancelled job (in loopback mode PyFlink cannot
interrupt Python threads; in process mode it kills the Python worker before ``finally``
blocks run). It only touches this host and this user, and only artifacts named after the
given job ids (``flink_dl.cluster.leftovers`` finds them). ``sweep_orphans`` needs no job
id: it removes what jobs whose client (or the process that ran a node) is gone left.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from flink_dl.cluster.leftovers import (
    ANY_NODE,
    kill_orphan,
    orphaned_processes,
    orphaned_work_dirs,
    remove_nodes,
    sweep_node_attempts,
)
from flink_dl.cluster.rendezvous import default_rendezvous_root, orphaned_scopes
from flink_dl.cluster.runners import release_abandoned_channels

log = logging.getLogger(__name__)

__all__ = ["sweep", "sweep_node_attempts", "sweep_orphans"]


def sweep(job_ids: Iterable[str], rendezvous_dir: str | None = None) -> dict[str, int]:
    """Kill node process groups, remove work dirs and rendezvous scopes of ``job_ids``, and
    close the channels that this process's (loopback) node operators of them still map."""
    killed = removed = released = 0
    for job_id in job_ids:
        groups, dirs = remove_nodes(job_id, ANY_NODE)
        killed += groups
        removed += dirs
        released += release_abandoned_channels(job_id)
        root = Path(rendezvous_dir) if rendezvous_dir else default_rendezvous_root()
        scope = root / job_id
        if scope.exists():
            shutil.rmtree(scope, ignore_errors=True)
            removed += 1
    if killed or removed or released:
        log.warning("cleaned up after the job: %d node process group(s) killed, %d dir(s) "
                    "removed, %d channel(s) released", killed, removed, released)
    return {"killed": killed, "removed": removed, "released": released}


def sweep_orphans(rendezvous_dir: str | None = None) -> dict[str, dict[str, int]]:
    """Kill node processes and remove work dirs and rendezvous scopes (under the default
    root, and under ``rendezvous_dir`` if given) of jobs whose owner is gone: the client
    that ran the job on its embedded mini-cluster, or the process that ran the node's
    operator. A live job's are left alone. Returns job id -> what was removed."""
    dirs = orphaned_work_dirs()
    result: dict[str, dict[str, int]] = {}

    def count(job_id: str, what: str) -> None:
        totals = result.setdefault(job_id, {"killed": 0, "removed": 0})
        totals[what] += 1

    for pid, job_id in orphaned_processes(d for found in dirs.values() for d in found).items():
        if kill_orphan(pid):
            count(job_id, "killed")
    for job_id, paths in dirs.items():
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
            count(job_id, "removed")
    roots = [None] if rendezvous_dir is None else [None, rendezvous_dir]
    for root in roots:
        for scope in orphaned_scopes(root):
            shutil.rmtree(scope, ignore_errors=True)
            count(scope.name, "removed")
    for job_id, totals in result.items():
        log.warning("cleaned up after job %s, whose client is gone: %d process(es) killed, "
                    "%d dir(s) removed", job_id, totals["killed"], totals["removed"])
    return result
