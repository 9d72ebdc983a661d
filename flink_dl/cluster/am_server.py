"""The AM's control-plane server: a TCP listener and one thread per node connection.

``AMServer`` binds (port chosen by the OS), accepts connections, authenticates each one
(``protocol.server_handshake``: the job's secret, job id and attempt) and passes every
message of an authenticated node to the ``ClusterStateMachine``, sending back its reply.
A connection that ends before its node said goodbye tells the machine
(``connection_ended``). Imports only the protocol, the AM's state machine and errors.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from flink_dl.cluster.am_state import ClusterStateMachine
from flink_dl.cluster.api import NodeKey
from flink_dl.cluster.protocol import recv_msg, send_msg, server_handshake
from flink_dl.errors import AuthenticationError, ProtocolError

log = logging.getLogger("flink_dl.cluster.am")  # the AM logs as one (users filter on it)


class AMServer:
    """Serves the nodes of one cluster attempt; shares the machine's ``cond``."""

    def __init__(self, cluster: ClusterStateMachine) -> None:
        self.cluster = cluster
        self.config = cluster.config
        self.timeouts = cluster.config.timeout
        #: Open, authenticated node connections (guarded by ``cluster.cond``).
        self.connections: set[socket.socket] = set()
        #: Connections refused by the handshake (guarded by ``cluster.cond``).
        self.refused = 0
        self._sock: socket.socket | None = None

    @property
    def started(self) -> bool:
        return self._sock is not None

    def start(self, bind_host: str) -> int:
        """Bind to ``bind_host`` and start accepting; returns the port."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock = server
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((bind_host, 0))
        server.listen(max(16, 2 * self.config.total_nodes))
        server.settimeout(0.2)
        threading.Thread(target=self._accept_loop, name="flink-dl-am-accept",
                         daemon=True).start()
        return server.getsockname()[1]

    def close(self) -> None:
        """Stop accepting and drop every connection (the machine is ``closing``)."""
        with self.cluster.cond:
            self.cluster.closing = True
            connections = list(self.connections)
            self.cluster.cond.notify_all()
        if self._sock is not None:
            self._sock.close()
        for conn in connections:
            close_quietly(conn)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self.cluster.closing:
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True,
                             name=f"flink-dl-am-conn-{peer[1]}").start()

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        cluster = self.cluster
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(self.timeouts.request)
        try:
            server_handshake(conn, self.config.secret, self.config.job_id, cluster.attempt)
        except (AuthenticationError, ProtocolError, OSError) as exc:
            with cluster.cond:
                self.refused += 1
            log.warning("AM refused connection from %s: %s", peer, exc)
            close_quietly(conn)
            return
        with cluster.cond:
            if cluster.closing:
                close_quietly(conn)
                return
            self.connections.add(conn)
        key: NodeKey | None = None
        conn.settimeout(self.timeouts.heartbeat_timeout + self.timeouts.request)
        try:
            while True:
                msg = recv_msg(conn)
                if msg["type"] == "bye":
                    key = None
                    break
                key, reply = cluster.handle(msg)
                send_msg(conn, reply)
        except (ConnectionError, TimeoutError, OSError, ProtocolError) as exc:
            if not cluster.closing:
                log.debug("AM connection from %s ended: %s", peer, exc)
        finally:
            with cluster.cond:
                self.connections.discard(conn)
                cluster.connection_ended(key)
            close_quietly(conn)


def close_quietly(sock: socket.socket) -> None:
    """Close ``sock``, ignoring errors."""
    with contextlib.suppress(OSError):
        sock.close()
