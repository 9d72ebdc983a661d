"""Sweeping what a local job of ML clusters left behind: node processes, work dirs, rendezvous.

Normally every exit path cleans up after itself. This is the safety net for the paths
PyFlink does not give a chance to run: a cancelled job (in loopback mode PyFlink cannot
interrupt Python threads; in process mode it kills the Python worker before ``finally``
blocks run). It only touches this host and this user, and only artifacts named after the
given job ids (``flink_dl.cluster.leftovers`` finds them).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from flink_dl.cluster.leftovers import ANY_NODE, remove_nodes, sweep_node_attempts
from flink_dl.cluster.rendezvous import default_rendezvous_root
from flink_dl.cluster.runners import release_abandoned_channels

log = logging.getLogger(__name__)

__all__ = ["sweep", "sweep_node_attempts"]


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
