"""A single-producer / single-consumer ring of framed messages in shared memory.

The memory is an anonymous ``memfd`` (no file in ``/dev/shm``: nothing can leak when a
process is killed, and only processes holding the descriptor can map it); two
``eventfd``s carry the wake-ups ("data published", "space freed"). The node runner
creates the ring and the node process inherits the three descriptors.

Layout (all little-endian, 8-byte aligned)::

    0    magic u64 | capacity u64
    64   write_pos u64            (producer-owned, monotonic byte counter)
    128  read_pos  u64            (consumer-owned, monotonic byte counter)
    192  producer_closed u64 | consumer_closed u64 | producer_waiting u64 | consumer_waiting
    256  data[capacity]

A frame is an 8-byte header ``(length u32, kind u32)`` plus the payload, padded to 8
bytes. A frame never wraps: if it does not fit before the end, a WRAP frame fills the
rest. The producer blocks while the ring lacks room (backpressure) and the consumer while
it is empty; every wait has a timeout and checks that the peer is still there. A side
signals the other's eventfd only when the other has raised its ``*_waiting`` flag, so a
busy stream costs no system calls. Flag and position are each stored, then fenced, then
the other one is read (Dekker-style), so a wake-up cannot be lost; a waiter also re-checks
every few milliseconds as a backstop.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import logging
import mmap
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flink_dl.errors import ClusterTimeoutError, ConfigError, FlinkDLError

log = logging.getLogger(__name__)

MAGIC = 0x464C4B444C52494E  # "FLKDLRIN"
HEADER_BYTES = 256
FRAME_HEADER = 8
_FRAME = struct.Struct("<II")
DEFAULT_CAPACITY = 64 * 1024 * 1024


_FENCE = threading.Lock()


def _full_fence() -> None:
    """A full memory barrier: taking a lock is an atomic read-modify-write (x86 ``lock``)."""
    _FENCE.acquire()
    _FENCE.release()


class ChannelClosedError(FlinkDLError):
    """The peer closed the channel or went away."""


class MessageTooLargeError(FlinkDLError, ValueError):
    """A message does not fit in the channel (raise the channel capacity)."""


class FrameKind(enum.IntEnum):
    DATA = 1
    END = 3  # end of data
    WRAP = 4  # internal: skip to the start of the ring
    ERROR = 5  # payload: UTF-8 error text from the producer


class _Header(ctypes.Structure):
    _fields_ = [
        ("magic", ctypes.c_uint64), ("capacity", ctypes.c_uint64), ("_pad0", ctypes.c_uint64 * 6),
        ("write_pos", ctypes.c_uint64), ("_pad1", ctypes.c_uint64 * 7),
        ("read_pos", ctypes.c_uint64), ("_pad2", ctypes.c_uint64 * 7),
        ("producer_closed", ctypes.c_uint64), ("consumer_closed", ctypes.c_uint64),
        ("producer_waiting", ctypes.c_uint64), ("consumer_waiting", ctypes.c_uint64),
        ("_pad3", ctypes.c_uint64 * 4),
    ]


assert ctypes.sizeof(_Header) == HEADER_BYTES


def _pad8(n: int) -> int:
    return (n + 7) & ~7


@dataclass(frozen=True)
class RingHandle:
    """The three descriptors of a ring, to hand to another process (``pass_fds``)."""

    mem_fd: int
    data_fd: int
    space_fd: int

    def fds(self) -> tuple[int, int, int]:
        return (self.mem_fd, self.data_fd, self.space_fd)

    def to_json(self) -> list[int]:
        return list(self.fds())

    @classmethod
    def from_json(cls, value: list[int]) -> RingHandle:
        return cls(*value)


class Ring:
    """One end (or both, in tests) of a shared-memory ring. See the module docstring."""

    def __init__(self, handle: RingHandle, create_capacity: int | None = None,
                 timeout_s: float = 60.0, peer_alive: Callable[[], bool] | None = None) -> None:
        self.handle = handle
        self.timeout_s = timeout_s
        self.peer_alive = peer_alive
        size = os.fstat(handle.mem_fd).st_size
        if create_capacity is not None:
            size = HEADER_BYTES + create_capacity
            os.ftruncate(handle.mem_fd, size)
        self._mm = mmap.mmap(handle.mem_fd, size)
        self._hdr = _Header.from_buffer(self._mm)
        if create_capacity is not None:
            self._hdr.capacity = create_capacity
            self._hdr.magic = MAGIC
        if self._hdr.magic != MAGIC:
            raise FlinkDLError("shared memory is not a flink-dl ring")
        self.capacity = int(self._hdr.capacity)
        self._data = memoryview(self._mm)[HEADER_BYTES:HEADER_BYTES + self.capacity]
        self._pending_release = 0
        self._fds_closed = False

    # --------------------------------------------------------------- creation
    @classmethod
    def create(cls, name: str, capacity: int = DEFAULT_CAPACITY,
               timeout_s: float = 60.0) -> Ring:
        """Create a new ring (memfd + two eventfds, all inheritable)."""
        if capacity < 4096 or capacity % 8:
            raise ConfigError(
                f"channel capacity must be a multiple of 8 and >= 4096, got {capacity}")
        mem_fd = os.memfd_create(f"flink-dl-{name}", os.MFD_CLOEXEC)
        data_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        space_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return cls(RingHandle(mem_fd, data_fd, space_fd), create_capacity=capacity,
                   timeout_s=timeout_s)

    @property
    def max_message_bytes(self) -> int:
        return self.capacity - FRAME_HEADER

    @property
    def used_bytes(self) -> int:
        """Bytes currently held in the ring (published and not yet released)."""
        return int(self._hdr.write_pos - self._hdr.read_pos)

    # ---------------------------------------------------------------- producer
    def send(self, payload: bytes | bytearray | memoryview, kind: FrameKind = FrameKind.DATA,
             timeout_s: float | None = None) -> None:
        """Publish one frame; blocks while the ring is full (backpressure)."""
        if not isinstance(payload, memoryview) or payload.format != "B" or payload.ndim != 1:
            payload = memoryview(payload).cast("B")
        n = payload.nbytes
        if n > self.max_message_bytes:
            raise MessageTooLargeError(
                f"message of {n} bytes exceeds the channel capacity of {self.capacity} bytes "
                "(set a larger channel capacity, or smaller batches)")
        need = FRAME_HEADER + _pad8(n)
        hdr = self._hdr
        w = hdr.write_pos
        off = w % self.capacity
        if off + need > self.capacity:  # does not fit before the end: WRAP, then start over
            skip = self.capacity - off
            if self.capacity - (w - hdr.read_pos) < skip:
                self._wait_for(lambda: self.capacity - (w - hdr.read_pos) >= skip,
                               self.handle.space_fd, "space in the channel", timeout_s)
            self._check_consumer()
            self._write_header(off, 0, FrameKind.WRAP)
            w += skip
            hdr.write_pos = w
            self._notify_consumer()
            off = 0
        if self.capacity - (w - hdr.read_pos) < need:
            self._wait_for(lambda: self.capacity - (w - hdr.read_pos) >= need,
                           self.handle.space_fd, "space in the channel", timeout_s)
        if hdr.consumer_closed:
            raise ChannelClosedError("the consumer closed the channel")
        base = HEADER_BYTES + off
        _FRAME.pack_into(self._mm, base, n, kind)
        self._mm[base + FRAME_HEADER:base + FRAME_HEADER + n] = payload
        hdr.write_pos = w + need
        self._notify_consumer()

    def _notify_consumer(self) -> None:
        _full_fence()  # the write_pos store must be visible before we read the flag
        if self._hdr.consumer_waiting:
            os.eventfd_write(self.handle.data_fd, 1)

    def _check_consumer(self) -> None:
        if self._hdr.consumer_closed:
            raise ChannelClosedError("the consumer closed the channel")

    def send_end(self) -> None:
        self.send(b"", FrameKind.END)

    def close_producer(self) -> None:
        self._hdr.producer_closed = 1
        os.eventfd_write(self.handle.data_fd, 1)  # always: the consumer may be about to wait

    def _write_header(self, off: int, length: int, kind: FrameKind) -> None:
        self._data[off:off + FRAME_HEADER] = _FRAME.pack(length, kind)

    # ---------------------------------------------------------------- consumer
    def recv_view(self, timeout_s: float | None = None) -> tuple[FrameKind, memoryview]:
        """Next frame as a view into shared memory, valid until ``release()``."""
        self.release()
        hdr = self._hdr
        while True:
            r = hdr.read_pos
            if hdr.write_pos == r:
                self._wait_for(lambda r=r: hdr.write_pos != r or hdr.producer_closed,
                               self.handle.data_fd, "data from the channel", timeout_s)
                if hdr.write_pos == r:
                    raise ChannelClosedError("the producer closed the channel without END")
            off = r % self.capacity
            length, kind_value = _FRAME.unpack_from(self._data, off)
            kind = FrameKind(kind_value)
            if kind is FrameKind.WRAP:
                hdr.read_pos = r + (self.capacity - off)
                self._notify_producer()
                continue
            self._pending_release = FRAME_HEADER + _pad8(length)
            start = off + FRAME_HEADER
            return kind, self._data[start:start + length]

    def poll_view(self) -> tuple[FrameKind, memoryview] | None:
        """Like ``recv_view`` but returns ``None`` at once when no frame is waiting."""
        self.release()
        if self._hdr.write_pos == self._hdr.read_pos:
            return None
        return self.recv_view(timeout_s=0.001)

    def release(self) -> None:
        """Give the last frame's space back to the producer."""
        if self._pending_release:
            self._hdr.read_pos = self._hdr.read_pos + self._pending_release
            self._pending_release = 0
            self._notify_producer()

    def _notify_producer(self) -> None:
        _full_fence()  # the read_pos store must be visible before we read the flag
        if self._hdr.producer_waiting:
            os.eventfd_write(self.handle.space_fd, 1)

    def recv(self, timeout_s: float | None = None) -> tuple[FrameKind, bytes]:
        """Next frame, copied out of shared memory."""
        kind, view = self.recv_view(timeout_s)
        data = bytes(view)
        self.release()
        return kind, data

    def close_consumer(self) -> None:
        self._hdr.consumer_closed = 1
        os.eventfd_write(self.handle.space_fd, 1)

    # ------------------------------------------------------------------ common
    def _wait_for(self, ready: Callable[[], bool], fd: int, what: str,
                  timeout_s: float | None) -> None:
        if ready():
            return
        hdr = self._hdr
        producer_side = fd == self.handle.space_fd
        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        last_peer_check = time.monotonic()
        if producer_side:
            hdr.producer_waiting = 1
        else:
            hdr.consumer_waiting = 1
        _full_fence()  # the flag must be visible before we re-check the positions
        try:
            while not ready():
                if producer_side and hdr.consumer_closed:
                    raise ChannelClosedError("the consumer closed the channel")
                now = time.monotonic()
                if now >= deadline:
                    raise ClusterTimeoutError(f"waited {limit}s for {what} (channel timeout)")
                readable, _, _ = select.select([fd], [], [], min(deadline - now, 0.005))
                if readable:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(fd)
                elif now - last_peer_check > 0.5:
                    last_peer_check = now
                    if self.peer_alive is not None and not self.peer_alive() and not ready():
                        raise ChannelClosedError(f"the peer went away while waiting for {what}")
        finally:
            if producer_side:
                hdr.producer_waiting = 0
            else:
                hdr.consumer_waiting = 0

    def close(self, close_fds: bool = True) -> None:
        """Unmap; close the descriptors (the memory is freed when no process maps it)."""
        if self._mm.closed:
            return
        if not self._unmap():
            log.debug("ring still has views in use; the mapping goes with them")
        if close_fds:
            self._close_fds()

    def close_when_unused(self, timeout_s: float) -> bool:
        """Close a ring that another thread may still be using (a cancelled operator's, in
        loopback mode): new use fails at once; the memory is unmapped as soon as that
        thread has dropped its views, and only then are the descriptors closed (closed
        earlier, their numbers could be reused while it still waits on them). False when
        still in use after ``timeout_s`` (then nothing but the header is given up)."""
        deadline = time.monotonic() + timeout_s
        while not self._unmap():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        self._close_fds()
        return True

    def _unmap(self) -> bool:
        """Drop the header and data views and unmap; False while views are still in use."""
        if self._mm.closed:
            return True
        self._pending_release = 0
        self.__dict__.pop("_hdr", None)  # every entry point fails from now on
        try:
            self._data.release()
            self._mm.close()
        except BufferError:
            return False
        return True

    def _close_fds(self) -> None:
        if self._fds_closed:
            return
        self._fds_closed = True
        for fd in self.handle.fds():
            with contextlib.suppress(OSError):
                os.close(fd)
