"""A node's side of the control plane: the AM's address (from the dataflow or a
rendezvous store), and an authenticated connection to it."""

from __future__ import annotations

import logging
import time
from typing import Any

from flink_dl.cluster.am import AMAddress, am_key
from flink_dl.cluster.api import RendezvousStore
from flink_dl.cluster.protocol import client_handshake, recv_msg, send_msg
from flink_dl.cluster.registry import rendezvous_of
from flink_dl.config import ClusterConfig
from flink_dl.errors import (
    AuthenticationError,
    ClusterFailedError,
    ClusterTimeoutError,
    ConfigError,
    ProtocolError,
)

log = logging.getLogger(__name__)

#: Seconds a node gives each advertised AM address to accept the connection before it
#: tries the next one (a blackholed address must not cost the whole request timeout).
CONNECT_TIMEOUT_S = 5.0


class AMConnection:
    """An authenticated control connection from a node to the AM."""

    def __init__(self, address: tuple[str, int], config: ClusterConfig, attempt: int,
                 connect_timeout: float | None = None) -> None:
        import socket

        self.timeouts = config.timeout
        self.sock = socket.create_connection(
            address, timeout=connect_timeout or self.timeouts.request)
        try:
            self.sock.settimeout(self.timeouts.request)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client_handshake(self.sock, config.secret, config.job_id, attempt)
        except BaseException:
            self.sock.close()
            raise

    def request(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send ``msg`` and return the AM's reply. A timeout or a broken frame closes the
        connection (a late reply would be read as the answer to the next request)."""
        self.sock.settimeout(timeout or self.timeouts.request)
        try:
            send_msg(self.sock, msg)
            reply = recv_msg(self.sock)
        except (TimeoutError, ProtocolError):
            self.sock.close()
            raise
        if reply["type"] == "error":
            raise ClusterFailedError(f"AM refused {msg['type']}: {reply.get('message')}")
        return reply

    def close(self, say_bye: bool = True) -> None:
        """Say goodbye (unless told not to) and close the socket."""
        if self.sock.fileno() < 0:
            return
        try:
            if say_bye:
                self.sock.settimeout(self.timeouts.request)
                send_msg(self.sock, {"type": "bye"})
        except OSError:
            pass
        finally:
            self.sock.close()


def connect_am(address: AMAddress, config: ClusterConfig) -> AMConnection:
    """Connect to the AM at the first of its advertised hosts that accepts the job's
    handshake (a host may have several addresses; not every one routes from here)."""
    if address.job_id != config.job_id:
        raise ClusterFailedError(f"the AM address is for job {address.job_id}, not "
                                 f"{config.job_id}")
    failures = []
    for host in address.hosts:
        try:
            conn = AMConnection((host, address.port), config, address.attempt,
                                connect_timeout=min(CONNECT_TIMEOUT_S, config.timeout.request))
        except (OSError, ProtocolError, AuthenticationError) as exc:
            log.info("AM of job %s not reachable at %s:%d: %s", config.job_id, host,
                     address.port, exc)
            failures.append(f"{host}:{address.port}: {exc}")
            continue
        return conn
    raise ClusterFailedError(
        f"could not reach the AM of job {config.job_id} attempt {address.attempt} at any "
        f"of its addresses: {'; '.join(failures)} (if the hosts cannot reach each other "
        "directly, set bind_host/advertise_host to an address they can)")


def rendezvous_store(config: ClusterConfig, node: str) -> RendezvousStore:
    """The store a node looks the AM up in (``config.rendezvous``'s strategy makes it)."""
    strategy, params = rendezvous_of(config)
    store = strategy.store(params)
    if store is None:
        raise ConfigError(f"node {node}: rendezvous={config.rendezvous!r} needs the AM "
                          "address from the AM operator (am_address)")
    return store


def find_am(store: RendezvousStore | None, config: ClusterConfig, attempt: int) -> AMAddress:
    """Poll the rendezvous store for the AM of this job and attempt
    (``timeouts.rendezvous``)."""
    assert store is not None
    deadline = time.monotonic() + config.timeout.rendezvous
    delay = 0.02
    while True:
        found = store.lookup(am_key(attempt))
        if found and found.get("attempt") == attempt and found.get("job_id") == config.job_id:
            return AMAddress.from_mapping(found)
        if time.monotonic() > deadline:
            raise ClusterTimeoutError(
                f"no AM for job {config.job_id} attempt {attempt} appeared in the "
                f"{config.rendezvous!r} rendezvous store within timeouts.rendezvous="
                f"{config.timeout.rendezvous}s"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
