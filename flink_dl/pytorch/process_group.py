"""Bringing up ``torch.distributed`` in a rank's process from the ML cluster spec.

Rank 0's node holds a reserved port (bound since before the spec was published); the
rendezvous ``TCPStore`` listens on that very socket (``master_listen_fd``, a duplicate of
the reserved descriptor that the store owns and closes itself), so no port is ever guessed
or raced for. Every rank gets ``MASTER_ADDR``/``MASTER_PORT``, ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` as torchrun would set them.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from flink_dl.cluster.context import NodeContext
from flink_dl.errors import ClusterTimeoutError

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class GroupInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str
    device: torch.device
    master: str
    #: The rendezvous store (rank 0 serves it); ranks leave small facts there.
    store: dist.Store | None = None


def torchrun_env(ctx: NodeContext) -> dict[str, str]:
    """The torchrun-style variables for this node, from the cluster spec."""
    addresses = ctx.cluster_spec[ctx.role]
    hosts = [a.rsplit(":", 1)[0] for a in addresses]
    master_host, master_port = addresses[0].rsplit(":", 1)
    local_rank = hosts[: ctx.index].count(hosts[ctx.index])
    return {
        "MASTER_ADDR": master_host, "MASTER_PORT": master_port, "RANK": str(ctx.index),
        "WORLD_SIZE": str(len(addresses)), "LOCAL_RANK": str(local_rank),
        "LOCAL_WORLD_SIZE": str(hosts.count(hosts[ctx.index])),
        "GROUP_RANK": str(sorted(set(hosts), key=hosts.index).index(hosts[ctx.index])),
    }


def init_process_group(ctx: NodeContext, backend: str, setup_timeout_s: float,
                       collective_timeout_s: float) -> GroupInfo:
    """Create the default process group; ``backend`` "auto" picks nccl when every rank has a
    GPU, else gloo. Raises ``ClusterTimeoutError`` when peers do not show up in time."""
    env = torchrun_env(ctx)
    os.environ.update(env)
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    host, port = env["MASTER_ADDR"], int(env["MASTER_PORT"])
    setup = datetime.timedelta(seconds=setup_timeout_s)
    try:
        if rank == 0:
            store = _master_store(ctx.reserved_socket(), host, port, world, setup)
        else:
            store = dist.TCPStore(host, port, world, False, timeout=setup)
        has_gpu = torch.cuda.is_available()
        store.set(f"flink_dl/gpu/{rank}", "1" if has_gpu else "0")
        keys = [f"flink_dl/gpu/{r}" for r in range(world)]
        store.wait(keys, setup)
        every_rank_has_gpu = all(store.get(k) == b"1" for k in keys)
    except (RuntimeError, dist.DistStoreError) as exc:
        raise ClusterTimeoutError(
            f"rank {rank}: torch.distributed rendezvous at {host}:{port} failed within "
            f"timeouts.rendezvous={setup_timeout_s}s: {exc}") from exc
    if backend == "auto":
        backend = "nccl" if every_rank_has_gpu else "gloo"
    _pin_collective_interface(ctx)
    if backend == "nccl":
        local_rank = int(env["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, store=store, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=collective_timeout_s))
    log.info("rank %d/%d: process group up (%s, master %s:%d)", rank, world, backend, host,
             port)
    return GroupInfo(rank, world, int(env["LOCAL_RANK"]), int(env["LOCAL_WORLD_SIZE"]),
                     backend, device, f"{host}:{port}", store)


def _pin_collective_interface(ctx: NodeContext) -> None:
    """Point gloo and NCCL at the interface of this node's advertised address, unless the
    user chose one (``GLOO_SOCKET_IFNAME``/``NCCL_SOCKET_IFNAME``). Left alone, gloo binds
    the address of ``gethostname()``, which many hosts map to 127.0.0.1 or 127.0.1.1, and
    ranks on other hosts could not reach it."""
    from flink_dl.cluster.net import interface_of, is_loopback

    host = ctx.cluster_spec[ctx.role][ctx.index].rsplit(":", 1)[0]
    if is_loopback(host):
        return
    interface = interface_of(host)
    if interface is None:
        log.info("rank %d: no local interface holds %s; gloo/NCCL choose their own",
                 ctx.index, host)
        return
    for variable in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
        if variable not in os.environ:
            os.environ[variable] = interface
            log.info("rank %d: %s=%s", ctx.index, variable, interface)


def _master_store(sock: socket.socket, host: str, port: int, world: int,
                  setup: datetime.timedelta) -> dist.TCPStore:
    """Rank 0's ``TCPStore``, listening on the node's reserved socket.

    The store takes ownership of the descriptor it is given and closes it when it is
    destroyed, so it gets a duplicate: the reserved socket is closed here, once, and no
    descriptor is ever closed twice (closing the same number twice could close an
    unrelated file that reused it).
    """
    try:
        sock.listen(max(128, world))
        listen_fd = os.dup(sock.fileno())
    finally:
        sock.close()
    try:
        return dist.TCPStore(host, port, world, True, timeout=setup, wait_for_workers=False,
                             master_listen_fd=listen_fd)
    except BaseException:
        os.close(listen_fd)
        raise


def destroy_process_group() -> None:
    """Destroy the default process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()
