"""Addresses and port reservation for AM and nodes.

Nothing here needs an address from the user. ``bind_host`` is resolved when the job is
built (``resolve_bind_host``): loopback on the embedded mini-cluster, the wildcard on a
real cluster. Under the wildcard the AM advertises every address of its host
(``host_addresses``, the one on the default route first); a node dials them in turn and
then advertises the source address of the connection that reached the AM, i.e. the
interface on the route between the two hosts (``node_host``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
WILDCARDS = frozenset({"0.0.0.0", "", "::"})
#: Addresses used only to ask the kernel which local address routes towards them (a UDP
#: ``connect`` sends no packet): TEST-NET-1 and a public resolver.
_ROUTE_PROBES = ("192.0.2.1", "8.8.8.8")


def is_wildcard(host: str | None) -> bool:
    return host is not None and host in WILDCARDS


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def route_source(destination: str) -> str | None:
    """The local address the kernel would use to reach ``destination`` (no packet is
    sent), or ``None`` when no route leads there."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((destination, 9))
        except OSError:
            return None
        return str(probe.getsockname()[0])


def host_addresses() -> list[str]:
    """This host's IPv4 addresses that peers may dial: the one on the default route first,
    then every other address of an interface that is up; loopback only when there is
    nothing else (a host with no network)."""
    import psutil

    stats = psutil.net_if_stats()
    found: list[str] = []
    for name, addresses in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for address in addresses:
            if address.family == socket.AF_INET and not is_loopback(address.address):
                found.append(address.address)
    for probe in _ROUTE_PROBES:
        preferred = route_source(probe)
        if preferred in found:
            found.remove(preferred)
            found.insert(0, preferred)
            break
    if not found:
        log.warning("this host has no non-loopback IPv4 address; advertising %s", LOOPBACK)
        return [LOOPBACK]
    return found


def interface_of(address: str) -> str | None:
    """The name of the interface that holds ``address`` (``None`` if none does)."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == address for a in addresses):
            return name
    return None


def am_hosts(bind_host: str, advertise_host: str | None) -> list[str]:
    """The addresses the AM advertises, in the order nodes should try them."""
    if advertise_host:
        return [advertise_host]
    if is_wildcard(bind_host):
        return host_addresses()
    return [bind_host]


def node_host(bind_host: str, advertise_host: str | None,
              am_connection: socket.socket) -> str:
    """The address a node advertises: ``advertise_host``; else a specific ``bind_host``;
    else (wildcard) the local address of its connection to the AM."""
    if advertise_host:
        return advertise_host
    if not is_wildcard(bind_host):
        return bind_host
    return str(am_connection.getsockname()[0])


def reserve_port(bind_host: str) -> socket.socket:
    """Bind a TCP socket to an OS-chosen port and keep it: the node *holds* its port.

    ``SO_REUSEADDR`` and ``SO_REUSEPORT`` are set, so a framework server in the node's
    process may bind the same port with ``SO_REUSEPORT`` (gRPC does by default) while the
    reservation still keeps every other process off it; or the entry can take the socket
    itself (``NodeContext.reserved_socket()``), which the node process inherits.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((bind_host, 0))
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise
    return sock
