"""Addresses and port reservation for AM and nodes."""

from __future__ import annotations

import socket


def advertised_host(bind_host: str, advertise_host: str | None) -> str:
    """The address peers should dial: ``advertise_host``, else ``bind_host`` unless wildcard."""
    if advertise_host:
        return advertise_host
    if bind_host in ("0.0.0.0", "", "::"):
        return socket.getfqdn()
    return bind_host


def reserve_port(bind_host: str) -> socket.socket:
    """Bind a TCP socket to an OS-chosen port and keep it: the node *holds* its port.

    ``SO_REUSEADDR`` and ``SO_REUSEPORT`` are set, so a framework server in the node's
    process may bind the same port with ``SO_REUSEPORT`` (gRPC does by default) while the
    reservation still keeps every other process off it; or the entry can take the socket
    itself (``NodeContext.reserved_socket()``), which the node process inherits.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((bind_host, 0))
    return sock
