"""A sum all-reduce of numpy arrays over the nodes' reserved sockets (stdlib only).

Rank 0 listens on the port its ``NodeContext`` reserved; the others connect to its address
in the cluster spec and send their array (``np.save`` bytes, never pickles); rank 0 adds
them up in rank order and sends the sum back to each.
"""

from __future__ import annotations

import io
import socket
import struct
import time

import numpy as np

from flink_dl.cluster.context import NodeContext

_LENGTH = struct.Struct("!Q")


class SocketAllReduce:
    """One connection per peer, opened on the first ``sum`` and kept until ``close``."""

    def __init__(self, node: NodeContext, rank: int, world_size: int, timeout_s: float,
                 connect_s: float) -> None:
        self.node = node
        self.rank = rank
        self.world_size = world_size
        self.timeout_s = timeout_s
        self.connect_s = connect_s
        self._peers: list[socket.socket] = []

    def sum(self, array: np.ndarray) -> np.ndarray:
        """The element-wise sum of every rank's ``array`` (same shape on every rank)."""
        array = np.asarray(array, dtype=np.float64)
        if self.world_size == 1:
            return array
        if not self._peers:
            self._connect()
        if self.rank != 0:
            _send(self._peers[0], array)
            return _receive(self._peers[0])
        total = array.copy()
        for peer in self._peers:  # in rank order: the same sum on every run
            total += _receive(peer)
        for peer in self._peers:
            _send(peer, total)
        return total

    def close(self) -> None:
        for peer in self._peers:
            peer.close()
        self._peers = []

    def _connect(self) -> None:
        if self.rank == 0:
            server = self.node.reserved_socket()
            server.settimeout(self.connect_s)
            server.listen(self.world_size)
            by_rank: dict[int, socket.socket] = {}
            while len(by_rank) < self.world_size - 1:
                peer, _ = server.accept()
                peer.settimeout(self.timeout_s)
                by_rank[int(_receive(peer)[0])] = peer
            server.close()
            self._peers = [by_rank[r] for r in sorted(by_rank)]
            return
        host, port = self.node.cluster_spec[self.node.role][0].rsplit(":", 1)
        deadline = time.monotonic() + self.connect_s
        while True:
            try:
                peer = socket.create_connection((host, int(port)), timeout=self.timeout_s)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                self.node.heartbeat()
                time.sleep(0.05)
        _send(peer, np.array([self.rank], dtype=np.float64))
        self._peers = [peer]


def _send(peer: socket.socket, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    data = buffer.getvalue()
    peer.sendall(_LENGTH.pack(len(data)) + data)


def _receive(peer: socket.socket) -> np.ndarray:
    (length,) = _LENGTH.unpack(_exactly(peer, _LENGTH.size))
    return np.load(io.BytesIO(_exactly(peer, length)), allow_pickle=False)


def _exactly(peer: socket.socket, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = peer.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("all-reduce: a peer closed its connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
