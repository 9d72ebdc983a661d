"""This process's node runners, by job: what a cancelled job's loopback operators left.

In loopback mode the node operators are threads of the client, and on a cancel PyFlink never
closes them, so their shared memory would stay mapped in the client until it exits. The
janitor calls ``release_abandoned_channels`` once it has stopped the job's entries.

May import: ``flink_dl.channel.ring`` and ``flink_dl.config`` (a runner registers itself
here; this module never imports ``cluster.node``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Protocol

from flink_dl.channel.ring import Ring
from flink_dl.config import ClusterConfig

log = logging.getLogger(__name__)


class NodeRunner(Protocol):
    """What this registry needs of a node runner (``cluster.node.NodeRunner`` has it)."""

    config: ClusterConfig
    name: str
    input: Ring | None
    output: Ring | None

    @property
    def entry_alive(self) -> bool:
        """Whether the node's entry process still runs."""


_RUNNERS: weakref.WeakSet[NodeRunner] = weakref.WeakSet()
_LOCK = threading.Lock()


def register(runner: NodeRunner) -> None:
    """Remember ``runner`` for as long as something else holds it."""
    with _LOCK:
        _RUNNERS.add(runner)


def of_job(job_id: str) -> list[NodeRunner]:
    """This process's live runners of ``job_id``."""
    with _LOCK:
        return [r for r in _RUNNERS if r.config.job_id == job_id]


def release_abandoned_channels(job_id: str, timeout_s: float = 5.0) -> int:
    """Close the channels of this process's nodes of ``job_id`` whose entry processes have
    ended (waiting up to ``timeout_s`` for entries just killed); returns how many rings were
    closed. A node whose entry still runs is not abandoned and keeps its channels."""
    closed = 0
    deadline = time.monotonic() + timeout_s
    for runner in of_job(job_id):
        while runner.entry_alive and time.monotonic() < deadline:  # just killed: reaping
            time.sleep(0.05)
        if runner.entry_alive:
            continue
        for name in ("input", "output"):
            ring = getattr(runner, name)
            if ring is None:
                continue
            if ring.close_when_unused(max(0.0, deadline - time.monotonic())):
                closed += 1
                setattr(runner, name, None)
            else:
                log.warning("node %s: its %s channel is still in use after %.0fs; it stays "
                            "mapped until its operator ends", runner.name, name, timeout_s)
    return closed
