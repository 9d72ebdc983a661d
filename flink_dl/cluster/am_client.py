"""A node's side of the control plane: find the AM in the rendezvous store, and talk to it
over an authenticated connection."""

from __future__ import annotations

import time
from typing import Any

from flink_dl.cluster.am import am_key
from flink_dl.cluster.api import RendezvousStore
from flink_dl.cluster.protocol import client_handshake, recv_msg, send_msg
from flink_dl.config import ClusterConfig
from flink_dl.errors import ClusterFailedError, ClusterTimeoutError, ProtocolError


class AMConnection:
    """An authenticated control connection from a node to the AM."""

    def __init__(self, address: tuple[str, int], config: ClusterConfig, attempt: int) -> None:
        import socket

        self.timeouts = config.timeout
        self.sock = socket.create_connection(address, timeout=self.timeouts.request)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
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


def find_am(store: RendezvousStore, config: ClusterConfig, attempt: int) -> tuple[str, int]:
    """Poll the rendezvous store for the AM of this job and attempt
    (``timeouts.rendezvous``)."""
    deadline = time.monotonic() + config.timeout.rendezvous
    delay = 0.02
    while True:
        found = store.lookup(am_key(attempt))
        if found and found.get("attempt") == attempt and found.get("job_id") == config.job_id:
            return str(found["host"]), int(found["port"])
        if time.monotonic() > deadline:
            raise ClusterTimeoutError(
                f"no AM for job {config.job_id} attempt {attempt} appeared in the "
                f"{config.rendezvous!r} rendezvous store within timeouts.rendezvous="
                f"{config.timeout.rendezvous}s"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
