"""Unit: the exactly-once ledger's pieces (no Flink): framing, node state, restore choice."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from flink_dl.channel.codecs import get_codec
from flink_dl.channel.exactly_once import (
    NodeStateStore,
    RankPosition,
    choose_restore,
    encode_restore,
    encode_sequenced,
    prunable_position,
    read_positions,
    state_positions,
    write_position,
)
from flink_dl.channel.node_io import NodeInput
from flink_dl.channel.ring import Ring
from flink_dl.errors import FlinkDLError


def test_state_store_keeps_newest_and_loads_by_position(tmp_path: Path) -> None:
    store = NodeStateStore(str(tmp_path / "s"), keep=3)
    for position in (2, 5, 9, 14):
        store.save(position, {"at": position})
    assert state_positions(tmp_path / "s") == [5, 9, 14]
    assert store.load(9) == {"at": 9}
    assert store.load(0) is None


def test_restore_picks_newest_state_within_the_restored_range(tmp_path: Path) -> None:
    store = NodeStateStore(str(tmp_path), keep=10)
    for position in (3, 6, 9, 12):
        store.save(position, position)
    # Flink restored acked=6, seq=10: state 12 covers input the source sends again.
    assert choose_restore(tmp_path, acked=6, seq=10) == 9
    assert state_positions(tmp_path) == [3, 6, 9]
    assert choose_restore(tmp_path, acked=0, seq=2) == 0  # nothing saved yet: from scratch
    with pytest.raises(RuntimeError, match="no node state between positions 7 and 8"):
        choose_restore(tmp_path, acked=7, seq=8)


def _batch(values: list[int]) -> bytes:
    payload = get_codec("arrow").encode(pa.record_batch({"v": pa.array(values, pa.int64())}))
    return payload.to_pybytes() if isinstance(payload, pa.Buffer) else bytes(payload)


def test_sequenced_input_resumes_and_rejects_gaps(tmp_path: Path) -> None:
    ring = Ring.create("t-eo", capacity=1 << 20)
    ring.send(encode_restore(2, 6))  # acked 2, sent 6: batches 3..6 are replayed
    ring.send(encode_sequenced(3, _batch([1, 2])))
    ring.send(encode_sequenced(4, _batch([3, 4, 5])))
    ring.send(encode_sequenced(5, _batch([6]), mark=(77, 9)))
    ring.send(encode_sequenced(7, _batch([7])))  # 6 is missing
    reader = NodeInput(Ring(ring.handle), get_codec("arrow"), epochs=1, work_dir=tmp_path,
                       sequenced=True)
    assert reader.restore_range() == (2, 6)
    with pytest.raises(FlinkDLError, match="cannot resume at batch 1"):
        reader.resume_at(1)
    reader.resume_at(3, offset=1)  # state covers batch 3 and one row of batch 4
    batches = reader.batches()
    first = next(batches)
    assert first.column("v").to_pylist() == [4, 5]
    assert reader.position == 4 and reader.last_frame == (4, 1) and reader.marks == {}
    assert next(batches).column("v").to_pylist() == [6] and reader.marks == {77: 9}
    with pytest.raises(FlinkDLError, match="batch 7 arrived where batch 6 was due"):
        next(batches)


def test_restored_input_read_without_resuming_is_an_error(tmp_path: Path) -> None:
    ring = Ring.create("t-eo2", capacity=1 << 20)
    ring.send(encode_restore(0, 2))
    reader = NodeInput(Ring(ring.handle), get_codec("arrow"), epochs=1, work_dir=tmp_path,
                       sequenced=True)
    with pytest.raises(FlinkDLError, match=r"resume the saved state before reading input"):
        next(reader.batches())


def test_rank_positions_prune_only_when_marks_arrived(tmp_path: Path) -> None:
    """The operator drops batches of a committed step only once it has received every
    message the ranks had read by then (and only positions of its own attempt)."""
    directory = tmp_path / "pos"
    write_position(directory, RankPosition(step=10, attempt=1, seq=4, offset=3,
                                           marks={11: 5, 12: 2}, committed=True), keep=5)
    write_position(directory, RankPosition(step=5, attempt=0, seq=2, committed=True), keep=5)
    write_position(directory, RankPosition(step=12, attempt=1, seq=6), keep=5)  # recorded
    assert [p.key for p in read_positions(directory)] == [(5, 0), (10, 1), (12, 1)]
    assert prunable_position(directory, 9, {11: 5, 12: 1}, attempt=1) == 0  # 12:2 not seen
    assert prunable_position(directory, 9, {11: 5, 12: 2}, attempt=1) == 4
    assert prunable_position(directory, 4, {11: 5, 12: 2}, attempt=1) == 0  # batch 5 unsent
    assert prunable_position(directory, 9, {11: 5, 12: 2}, attempt=2) == 0  # older attempt
    position = read_positions(directory)[1]
    assert position.usable(acked=4, seq=5) and not position.usable(acked=5, seq=9)
    assert not position.usable(acked=0, seq=4)
    for step in range(20, 27):
        write_position(directory, RankPosition(step=step, attempt=1, seq=step), keep=5)
    assert [p.step for p in read_positions(directory)] == [22, 23, 24, 25, 26]


def test_state_dir_open_to_others_is_refused(tmp_path) -> None:
    """State files are unpickled: a directory others may write to is an error, not a load."""
    import os

    import pytest

    from flink_dl.channel.exactly_once import NodeStateStore

    directory = tmp_path / "state"
    store = NodeStateStore(str(directory))
    store.save(3, {"count": 3})
    assert store.load(3) == {"count": 3}
    assert not list(directory.glob(".*.tmp"))
    os.chmod(directory, 0o777)
    with pytest.raises(PermissionError, match="group/other-writable"):
        store.load(3)
    with pytest.raises(PermissionError, match="group/other-writable"):
        store.save(4, {"count": 4})


class _Store:
    """The rendezvous store's set/get/check, in memory (the real one is a TCPStore)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def set(self, key: str, value: str) -> None:
        self.data[key] = value.encode()

    def get(self, key: str) -> bytes:
        return self.data[key]

    def check(self, keys: list[str]) -> bool:
        return all(k in self.data for k in keys)


def test_ranks_commit_a_step_once_all_recorded_it_and_resume_from_a_shared_one(
        tmp_path: Path) -> None:
    from flink_dl.training.exactly_once import (
        RankPositions,
        common_restore_point,
        decode_key,
        encode_key,
    )

    store = _Store()
    ranks = [RankPositions(str(tmp_path / f"r{r}"), r, 2, attempt=0, store=store, keep=5)
             for r in range(2)]
    ranks[0].record(3, (5, 2), {7: 10})
    assert [p.committed for p in read_positions(tmp_path / "r0")] == [False]  # rank 1 not yet
    ranks[1].record(3, (4, 0), {8: 4})
    ranks[0].commit_ready()
    for r, seq in ((0, 5), (1, 4)):
        (position,) = read_positions(tmp_path / f"r{r}")
        assert position.committed and position.seq == seq
        assert position.marks == {7: 10, 8: 4}  # the newest message any rank had read
    ranks[0].record(6, (9, 0), {7: 20})  # rank 1 is killed before it records step 6
    offers = [ranks[0].offer(acked=5, seq=12), ranks[1].offer(acked=4, seq=12)]
    assert offers == [[encode_key(3, 0), encode_key(6, 0)], [encode_key(3, 0)]]
    key = common_restore_point(offers)
    assert decode_key(key) == (3, 0)
    assert ranks[0].resume(key).offset == 2
    assert [p.step for p in read_positions(tmp_path / "r0")] == [3]  # step 6 abandoned
    assert common_restore_point([[encode_key(3, 0)], [-1, -1]]) is None
    ranks[1].discard_all()
    assert read_positions(tmp_path / "r1") == []


def test_tracked_rechunk_positions_straddle_channel_batches() -> None:
    """Loader batches cut across channel batches: the position after each is (last whole
    channel batch, rows read of the next)."""
    from flink_dl.training.exactly_once import rechunk_tracked

    frames = iter([(4, 0), (5, 0), (6, 2)])  # (seq, first row) of each batch as it is read
    current: list[tuple[int, int]] = []

    def batches():
        for rows in (5, 3, 4):
            current[:] = [next(frames)]
            yield pa.record_batch({"v": pa.array(range(rows))})

    out = [(t.num_rows, pos) for t, pos in rechunk_tracked(batches(), lambda: current[0], 4,
                                                            drop_last=False)]
    # 5 rows of batch 4, 3 of batch 5, 4 of batch 6 (which resumed at its row 2)
    assert out == [(4, (3, 4)), (4, (5, 0)), (4, (6, 0))]
