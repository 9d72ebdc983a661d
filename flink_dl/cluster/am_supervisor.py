"""The AM's supervision: the deadlines no node message drives.

``supervise`` runs until the cluster reaches a terminal state: it fails the registration
when ``timeouts.registration`` passes, declares nodes lost after
``timeouts.heartbeat_timeout`` of silence, and logs a status line for each running node
without progress every ``timeouts.status_interval``. ``await_nodes_leaving`` then gives
the nodes ``timeouts.shutdown`` to acknowledge and hang up. Imports only the cluster's
interfaces and the AM's state machine and server.
"""

from __future__ import annotations

import logging
import time

from flink_dl.cluster.am_server import AMServer
from flink_dl.cluster.am_state import ClusterStateMachine
from flink_dl.cluster.api import TERMINAL_STATES, ClusterState, Event, EventKind, NodeState

log = logging.getLogger("flink_dl.cluster.am")  # the AM logs as one (users filter on it)


def supervise(cluster: ClusterStateMachine) -> None:
    """Watch ``cluster``'s deadlines until its state is terminal."""
    timeouts = cluster.config.timeout
    registration_deadline = time.monotonic() + timeouts.registration
    next_status = time.monotonic() + timeouts.status_interval
    with cluster.cond:
        while cluster.state not in TERMINAL_STATES:
            now = time.monotonic()
            if now >= next_status:
                next_status = now + timeouts.status_interval
                _log_stalled_nodes(cluster)
            if cluster.state is ClusterState.INIT and now > registration_deadline:
                missing = [k for k, n in cluster.nodes.items() if n.state is NodeState.PENDING]
                for key in missing:
                    cluster.nodes[key].error = (
                        f"did not register within timeouts.registration={timeouts.registration}s")
                cluster.fire(Event(EventKind.REGISTRATION_TIMEOUT, detail=(
                    f"{len(missing)} node(s) did not register in time")))
                continue
            for key, node in cluster.nodes.items():
                if node.state in (NodeState.REGISTERED, NodeState.RUNNING) and (
                    now - node.last_seen > timeouts.heartbeat_timeout
                ):
                    error = (f"no heartbeat for {now - node.last_seen:.1f}s "
                             f"(timeouts.heartbeat_timeout={timeouts.heartbeat_timeout})")
                    log.warning("node %s:%d lost: %s", *key, error)
                    cluster.mark_lost(key, error)
            cluster.cond.wait(timeout=0.1)


def _log_stalled_nodes(cluster: ClusterStateMachine) -> None:
    """One status line per running node without progress for ``timeouts.status_interval``
    (a hung entry is visible long before ``timeouts.progress`` fails it). Caller holds
    ``cluster.cond``."""
    timeouts = cluster.config.timeout
    limit = timeouts.progress
    for node in cluster.nodes.values():
        if node.state is NodeState.RUNNING and node.progress_age >= timeouts.status_interval:
            log.warning("%s (timeouts.progress=%s)", node.status_line(),
                        f"{limit}s" if limit is not None else "off")


def await_nodes_leaving(cluster: ClusterStateMachine, server: AMServer) -> None:
    """Wait up to ``timeouts.shutdown`` for every node connection to close."""
    shutdown = cluster.config.timeout.shutdown
    deadline = time.monotonic() + shutdown
    with cluster.cond:
        while server.connections and time.monotonic() < deadline:
            cluster.cond.wait(timeout=0.1)
        if server.connections:
            log.warning("AM: %d node connection(s) still open after timeouts.shutdown=%ss",
                        len(server.connections), shutdown)
