"""The operator's side of exactly-once input (``flink_dl.channel.exactly_once``): batches
numbered and kept in Flink keyed state until the node's saved state covers them (used by
``flink.fed_node``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from pyflink.common.typeinfo import Types
from pyflink.datastream.functions import RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from flink_dl.channel.exactly_once import (
    encode_restore,
    encode_sequenced,
    prunable_position,
    split_marked,
)

log = logging.getLogger(__name__)


class ExactlyOnceLedger:
    """The operator's side of exactly-once input (``flink_dl.channel.exactly_once``): the
    last sequence number sent, the last one the node's saved state covers, and the
    batches in between, all in Flink keyed state (the node's key); in memory, the newest
    message received from each packing operator (its marks)."""

    PRUNE_EVERY_S = 0.2

    def __init__(self, runtime_context: RuntimeContext, attempt: int) -> None:
        self.seq = runtime_context.get_state(ValueStateDescriptor("flink_dl_seq", Types.LONG()))
        self.acked = runtime_context.get_state(
            ValueStateDescriptor("flink_dl_acked", Types.LONG()))
        self.pending = runtime_context.get_map_state(MapStateDescriptor(
            "flink_dl_pending", Types.LONG(), Types.PICKLED_BYTE_ARRAY()))
        self.attempt = attempt
        self.received: dict[int, int] = {}
        self._positions: dict[str, Any] = {}
        self._last_prune = 0.0

    def restore(self) -> list[bytes]:
        """Frames to send first: the restored range, then every pending batch (the node
        skips those its saved state covers)."""
        acked, seq = self.acked.value() or 0, self.seq.value() or 0
        frames = [encode_restore(acked, seq)]
        frames += [encode_sequenced(k, self.pending.get(k)) for k in range(acked + 1, seq + 1)]
        log.info("exactly-once: restored batches %d..%d (acked %d, sent %d)", acked + 1, seq,
                 acked, seq)
        return frames

    def record(self, message: memoryview) -> bytes:
        """Number a packed message (its mark noted), keep its payload, return the frame."""
        mark, payload = split_marked(message)
        if mark[1] > self.received.get(mark[0], -1):
            self.received[mark[0]] = mark[1]
        seq = (self.seq.value() or 0) + 1
        data = bytes(payload)
        self.seq.update(seq)
        self.pending.put(seq, data)
        return encode_sequenced(seq, data, mark)

    def prune(self, state_dir: str | None) -> None:
        """Drop the batches the node's newest saved state covers."""
        now = time.monotonic()
        if state_dir is None or now - self._last_prune < self.PRUNE_EVERY_S:
            return
        self._last_prune = now
        acked, seq = self.acked.value() or 0, self.seq.value() or 0
        newest = prunable_position(state_dir, seq, self.received, self.attempt,
                                   self._positions)
        if newest <= acked:
            return
        for key in range(acked + 1, newest + 1):
            self.pending.remove(key)
        self.acked.update(newest)
