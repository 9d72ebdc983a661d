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
    # A worker dials the ps at the address from the cluster spec: no hand-written IPs.
    host, port = ctx.cluster_spec["ps"][0].rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10):
        pass
    return {**seen, "reached_ps_in_ms": round(1000 * (time.monotonic() - started), 2)}
