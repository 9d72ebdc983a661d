"""The application master (AM) of one ML cluster attempt.

``AppMaster`` puts the AM's three parts together: the state machine
(``am_state.ClusterStateMachine``: registration, cluster spec, transitions through the
rules), the control-plane server (``am_server.AMServer``: one thread per authenticated
node connection) and the supervision of deadlines (``am_supervisor``). It listens on
``bind_host`` (port chosen by the OS) and makes its address known (``am_address``: the
Flink operator emits it into the dataflow; with a rendezvous store it is published under
``am-<attempt>``). ``run()`` blocks until the cluster reaches a terminal state and every
node has acknowledged it (or ``timeouts.shutdown`` passed).
"""

from __future__ import annotations

import logging
import os
import time

from flink_dl.cluster.am_records import AMAddress, AMSummary, NodeRecord, am_key
from flink_dl.cluster.am_server import AMServer
from flink_dl.cluster.am_state import ClusterStateMachine
from flink_dl.cluster.am_supervisor import await_nodes_leaving, supervise
from flink_dl.cluster.api import ClusterRules, ClusterState, RendezvousStore
from flink_dl.cluster.net import LOOPBACK, am_hosts
from flink_dl.cluster.registry import get_rules, rendezvous_of
from flink_dl.config import ClusterConfig

__all__ = ["AMAddress", "AMSummary", "AppMaster", "NodeRecord", "am_key"]

log = logging.getLogger(__name__)


class AppMaster:
    """Owns one ML cluster attempt: see the module docstring."""

    def __init__(
        self,
        config: ClusterConfig,
        attempt: int = 0,
        rules: ClusterRules | None = None,
        store: RendezvousStore | None = None,
    ) -> None:
        self.config = config
        self.attempt = attempt
        self.timeouts = config.timeout
        self.rules = rules or get_rules(config.plugin)
        #: Where the AM publishes its address; ``None`` when it travels through the
        #: dataflow (the strategy has no store; the operator emits ``am_address``).
        strategy, params = rendezvous_of(config)
        self.store = store or strategy.store(params)
        #: The state machine (node records, state, spec) the server and supervisor share.
        self.cluster = ClusterStateMachine(config, attempt, self.rules)
        self.server = AMServer(self.cluster)
        self.address: tuple[str, int] | None = None
        #: Every address the AM can be dialled at (set by ``start``).
        self.am_address: AMAddress | None = None

    @property
    def state(self) -> ClusterState:
        """The cluster's current state."""
        with self.cluster.cond:
            return self.cluster.state

    @property
    def refused_connections(self) -> int:
        """Connections refused by the handshake (wrong secret, job or attempt)."""
        with self.cluster.cond:
            return self.server.refused

    def start(self) -> tuple[str, int]:
        """Bind, start serving, and publish the address; returns (advertised host, port)."""
        try:
            bind_host = self.config.bind_host or LOOPBACK
            port = self.server.start(bind_host)
            hosts = am_hosts(bind_host, self.config.advertise_host)
            self.address = (hosts[0], port)
            self.am_address = AMAddress(self.config.job_id, self.attempt, tuple(hosts), port)
            with self.cluster.cond:
                self.cluster.timing["am_started"] = time.time()
            if self.store is not None:
                for old in range(self.attempt):  # left by AMs of earlier, killed attempts
                    self.store.delete(am_key(old))
                self.store.publish(am_key(self.attempt),
                                   self.am_address.to_mapping() | {"pid": os.getpid()})
        except BaseException:
            self.close()  # stops the accept loop, closes the socket
            raise
        log.info("AM of job %s attempt %d listening on %s (port %d)",
                 self.config.job_id, self.attempt, ", ".join(hosts), port)
        return self.address

    def run(self) -> AMSummary:
        """Drive the cluster to a terminal state; raise ``ClusterFailedError`` if it failed."""
        if not self.server.started:
            self.start()
        try:
            supervise(self.cluster)
            await_nodes_leaving(self.cluster, self.server)
        finally:
            self.close()
        summary = self.summary()
        if summary.state is ClusterState.FAILED:
            raise self.cluster.failure()
        return summary

    def summary(self) -> AMSummary:
        """A snapshot of the cluster: state, nodes, failures and timings."""
        with self.cluster.cond:
            return self.cluster.summary(self.server.refused)

    def close(self) -> None:
        """Stop serving, drop connections, and remove the published address."""
        self.server.close()
        if self.store is None:
            return
        try:
            self.store.delete(am_key(self.attempt))
        finally:
            self.store.close()
