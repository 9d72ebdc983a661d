"""Exactly-once stream training of a data-parallel model (every framework's side).

The ranks of one model step together, so a checkpoint of the model at step *k* covers,
for every rank, the input that rank had trained on by step *k*. Each rank records that
position durably (a ``pos-*`` file in its node's state directory) when the checkpoint is
written, the chief after writing it. Once every rank has recorded step *k* (seen through
the rendezvous store, without waiting: the ranks step in lockstep, so a step is complete
by the next checkpoint), each rank marks its file committed, which lets its operator drop
the batches before it (``flink_dl.channel.exactly_once``). After a restore the ranks
resume from the newest step that every rank recorded and every rank's restored range
allows (a step every rank recorded has its model checkpoint), and skip what it covers.

Steps a rank commits carry the merged marks of all ranks, so that an operator never drops
a batch another rank's restored range would still need.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import pyarrow as pa

from flink_dl.channel.exactly_once import (
    RankPosition,
    position_path,
    read_positions,
    write_position,
)
from flink_dl.errors import FlinkDLError

log = logging.getLogger(__name__)

#: Rendezvous-store key of one rank's position at one step of one attempt.
_KEY = "flink_dl/eo/a{attempt}/s{step}/r{rank}"
#: Keys travel through collectives as one integer: ``step * _ATTEMPTS + attempt``.
_ATTEMPTS = 1 << 20
#: How many of its newest usable steps a rank offers when the ranks agree on one.
OFFERED_STEPS = 64


class KeyValueStore(Protocol):
    """What of the framework's rendezvous store is used (``torch.distributed.Store``)."""

    def set(self, key: str, value: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def check(self, keys: list[str]) -> bool: ...


class ExactlyOnceError(FlinkDLError, RuntimeError):
    """Exactly-once training cannot resume or was used out of order; the message says
    what to change."""


def encode_key(step: int, attempt: int) -> int:
    return step * _ATTEMPTS + attempt


def decode_key(key: int) -> tuple[int, int]:
    return divmod(key, _ATTEMPTS)


def common_restore_point(offers: Sequence[Sequence[int]]) -> int | None:
    """The newest step key every rank offers (padding ``-1`` ignored), or ``None``."""
    shared = None
    for offer in offers:
        keys = {k for k in offer if k >= 0}
        shared = keys if shared is None else shared & keys
    return max(shared) if shared else None


def rechunk_tracked(batches: Iterator[pa.RecordBatch], last_frame: Callable[[], tuple[int, int]],
                    batch_size: int, drop_last: bool,
                    ) -> Iterator[tuple[pa.Table, tuple[int, int]]]:
    """Tables of ``batch_size`` rows, each with the input position after its last row:
    ``(seq, offset)`` = every batch up to ``seq`` and ``offset`` rows of the next one.
    ``last_frame()`` tells the (sequence number, first row) of the batch just read."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    position = (0, 0)
    for batch in batches:
        seq, first_row = last_frame()
        offset = 0
        while offset < batch.num_rows:
            take = min(batch_size - pending_rows, batch.num_rows - offset)
            pending.append(batch.slice(offset, take))
            pending_rows += take
            offset += take
            position = (seq, 0) if offset == batch.num_rows else (seq - 1, first_row + offset)
            if pending_rows == batch_size:
                yield pa.Table.from_batches(pending), position
                pending, pending_rows = [], 0
        if batch.num_rows == 0:
            position = (seq, 0)
    if pending_rows and not drop_last:
        yield pa.Table.from_batches(pending), position


class RankPositions:
    """One rank's committed positions: record at each checkpoint, commit complete steps,
    offer and discard on resume."""

    def __init__(self, state_dir: str, rank: int, world_size: int, attempt: int,
                 store: KeyValueStore | None, keep: int) -> None:
        if world_size > 1 and store is None:
            raise ExactlyOnceError("exactly-once training of several ranks needs the "
                                   "framework's rendezvous store")
        self.state_dir = state_dir
        self.rank = rank
        self.world_size = world_size
        self.attempt = attempt
        self.store = store
        self.keep = keep
        self._recorded: dict[int, RankPosition] = {}

    def record(self, step: int, position: tuple[int, int], marks: dict[int, int]) -> None:
        """This rank's input stood at ``position`` when the checkpoint of ``step`` was
        written (after it, on the chief); commit every step all ranks have recorded."""
        seq, offset = position
        own = RankPosition(step, self.attempt, seq, offset, dict(marks))
        write_position(self.state_dir, own, self.keep)  # durable before the others see it
        self._recorded[step] = own
        if self.store is not None:
            self.store.set(self._key(step, self.rank), json.dumps(
                {"seq": seq, "offset": offset, "marks": {str(k): v for k, v in marks.items()}}))
        self.commit_ready()

    def commit_ready(self) -> list[int]:
        """Commit (``pos-*`` file) each recorded step that every rank has recorded."""
        committed = []
        for step in sorted(self._recorded):
            own = self._recorded[step]
            marks = dict(own.marks)
            if self.store is not None and self.world_size > 1:
                keys = [self._key(step, r) for r in range(self.world_size)]
                if not self.store.check(keys):
                    continue
                for key in keys:
                    other = json.loads(self.store.get(key))
                    for nonce, counter in other["marks"].items():
                        marks[int(nonce)] = max(marks.get(int(nonce), -1), int(counter))
            write_position(self.state_dir, RankPosition(step, self.attempt, own.seq,
                                                        own.offset, marks, committed=True),
                           self.keep)
            committed.append(step)
        for step in committed:
            del self._recorded[step]
        return committed

    def offer(self, acked: int, seq: int) -> list[int]:
        """Keys of this rank's recorded steps the restored range (``acked``, ``seq``) can
        resume from, newest ``OFFERED_STEPS``."""
        usable = [encode_key(*p.key) for p in read_positions(self.state_dir)
                  if p.usable(acked, seq)]
        return sorted(usable)[-OFFERED_STEPS:]

    def resume(self, key: int) -> RankPosition:
        """This rank's position at the chosen step; its positions of later (abandoned)
        steps are deleted."""
        step, attempt = decode_key(key)
        chosen = None
        for position in read_positions(self.state_dir):
            if position.key == (step, attempt):
                chosen = position
            elif position.step >= step:
                position_path(self.state_dir, position.step, position.attempt).unlink(
                    missing_ok=True)
        if chosen is None:
            raise ExactlyOnceError(f"rank {self.rank}: recorded step {step} (attempt "
                                   f"{attempt}) is gone from {self.state_dir}")
        return chosen

    def discard_all(self) -> None:
        """Delete this rank's recorded positions (a resume from scratch)."""
        for position in read_positions(self.state_dir):
            position_path(self.state_dir, position.step, position.attempt).unlink(
                missing_ok=True)

    def _key(self, step: int, rank: int) -> str:
        return _KEY.format(attempt=self.attempt, step=step, rank=rank)


def no_restore_point(acked: Sequence[int], offers: Sequence[Sequence[int]],
                     config_name: str) -> ExactlyOnceError:
    offered = [[decode_key(k) for k in o if k >= 0] for o in offers]
    return ExactlyOnceError(
        "exactly-once: the ranks share no committed step to resume from (restored batches "
        f"acknowledged per rank {list(acked)}; usable (step, attempt) per rank {offered}). "
        f"Raise {config_name}(keep_checkpoints=...) so checkpoints outlive Flink's "
        "checkpoint interval")
