"""Node entries of the built-in demo."""

from __future__ import annotations

import os
import socket
import time

from flink_dl.cluster.context import NodeContext


def describe_node(ctx: NodeContext) -> dict:
    """Workers do a little work and report what they saw; the ps waits to be stopped."""
    seen = {
        "role": ctx.role, "index": ctx.index, "address": ctx.address, "pid": os.getpid(),
        "peers": {role: len(addrs) for role, addrs in ctx.cluster_spec.items()},
    }
    if ctx.role == "ps":
        # A parameter server serves until the AM says the workers are done.
        with ctx.reserved_socket() as server:
            server.listen()
            stopped = ctx.wait_for_stop(timeout=300)
        return {**seen, "stopped_by_am": stopped}
    # A worker dials the ps at the address from the cluster spec: no hand-written IPs. The
    # ps's port is reserved (bound) from the start, but it listens only once its process
    # runs: until then a dial is refused, so retry, as a framework's client would.
    host, port = ctx.cluster_spec["ps"][0].rsplit(":", 1)
    started = time.monotonic()
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=10):
                break
        except ConnectionRefusedError:
            if time.monotonic() - started > PS_DIAL_TIMEOUT_S:
                raise
            time.sleep(0.05)
    return {**seen, "reached_ps_in_ms": round(1000 * (time.monotonic() - started), 2)}


#: How long a demo worker keeps dialling a ps that does not listen yet.
PS_DIAL_TIMEOUT_S = 60.0
