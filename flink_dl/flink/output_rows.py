"""Decoding the rows a node wrote to its output ring into Flink ``Row`` records."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from pyflink.common import Row

from flink_dl.channel.codecs import get_codec
from flink_dl.channel.ring import ChannelClosedError, FrameKind, Ring


def drain_rows(ring: Ring, block: bool, codec: str = "arrow") -> Iterator[Row]:
    """Rows the node wrote, until END (or, when not blocking, until the ring is empty)."""
    decoder = get_codec(codec)
    while True:
        try:
            frame = ring.recv_view() if block else ring.poll_view()
        except ChannelClosedError:
            return  # the entry is gone; join() reports how it ended
        if frame is None:
            return
        kind, view = frame
        if kind is FrameKind.END:
            ring.release()
            return
        if kind is FrameKind.DATA:
            batch = decoder.decode(pa.py_buffer(bytes(view)))
            ring.release()
            for row in batch.to_pylist():
                yield Row(**row)
        else:
            ring.release()
