"""Unit: the exactly-once ledger's pieces (no Flink): framing, node state, restore choice."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from flink_dl.channel.codecs import get_codec
from flink_dl.channel.exactly_once import (
    NodeStateStore,
    choose_restore,
    encode_restore,
    encode_sequenced,
    state_positions,
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
    ring.send(encode_restore(4))
    ring.send(encode_sequenced(5, _batch([1, 2])))
    ring.send(encode_sequenced(6, _batch([3])))
    ring.send(encode_sequenced(8, _batch([4])))  # 7 is missing
    reader = NodeInput(Ring(ring.handle), get_codec("arrow"), epochs=1, work_dir=tmp_path,
                       sequenced=True)
    assert reader.restore_position() == 4
    batches = reader.batches()
    assert next(batches).num_rows == 2 and reader.position == 5
    assert next(batches).num_rows == 1 and reader.position == 6
    with pytest.raises(FlinkDLError, match="batch 8 follows 6"):
        next(batches)


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
