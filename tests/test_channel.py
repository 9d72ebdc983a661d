"""Unit: shared-memory ring, codecs, node-side IO, key placement (real shm and processes)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from flink_dl.channel.arrays import NullValueError, numpy_batches
from flink_dl.channel.codecs import Codec, get_codec, register_codec
from flink_dl.channel.node_io import (
    NodeInput,
    NodeOutput,
    OutputSchemaError,
    SchemaChangedError,
)
from flink_dl.channel.ring import (
    ChannelClosedError,
    FrameKind,
    MessageTooLargeError,
    Ring,
)
from flink_dl.errors import ClusterTimeoutError, ConfigError
from flink_dl.flink.keys import keys_for_subtasks, subtask_of_key


def _batch(start: int, n: int) -> pa.RecordBatch:
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.RecordBatch.from_arrays([pa.array(ids), pa.array(ids.astype(np.float32))],
                                      names=["id", "x"])


def test_roundtrip_with_wraparound_and_end() -> None:
    ring = Ring.create("t-wrap", capacity=4096)
    consumer = Ring(ring.handle)
    sent = [os.urandom(n) for n in (1, 7, 1000, 3000, 8, 2500, 4000, 0, 1234, 4088)] * 20
    got: list[tuple[FrameKind, bytes]] = []

    def consume() -> None:
        while not got or got[-1][0] is not FrameKind.END:
            got.append(consumer.recv(timeout_s=10))

    t = threading.Thread(target=consume)
    t.start()
    for payload in sent:  # odd sizes up to the maximum: many wrap-arounds
        ring.send(payload, timeout_s=10)
    ring.send_end()
    t.join(20)
    assert got == [(FrameKind.DATA, p) for p in sent] + [(FrameKind.END, b"")]
    assert ring.used_bytes == 0
    consumer.close(close_fds=False)
    ring.close()


def test_oversize_message_is_refused_with_a_clear_error() -> None:
    ring = Ring.create("t-big", capacity=4096)
    try:
        with pytest.raises(MessageTooLargeError, match="exceeds the channel capacity"):
            ring.send(b"x" * 5000)
    finally:
        ring.close()


def test_backpressure_blocks_producer_and_never_exceeds_capacity() -> None:
    ring = Ring.create("t-bp", capacity=64 * 1024)
    consumer = Ring(ring.handle)
    received: list[bytes] = []
    peak = 0
    size, delay = 10_000, 0.002

    def slow_consumer() -> None:
        while True:
            kind, data = consumer.recv()
            if kind is FrameKind.END:
                return
            received.append(data)
            time.sleep(delay)

    t = threading.Thread(target=slow_consumer)
    t.start()
    started = time.monotonic()
    payloads = [bytes([i % 256]) * size for i in range(200)]
    for p in payloads:
        ring.send(p)
        peak = max(peak, ring.used_bytes)
    # Measured when the producer is done, before waiting for the consumer: a producer
    # that did not block would be done long before the consumer (2 MB through 64 KiB).
    received_when_sent = len(received)
    sent_s = time.monotonic() - started
    ring.send_end()
    t.join(10)
    assert not t.is_alive()
    assert received == payloads
    assert peak <= ring.capacity
    assert peak > ring.capacity // 2, "the producer ran ahead until the ring was nearly full"
    in_ring = ring.capacity // size  # frames the ring can hold, +1 in the consumer's hands
    assert received_when_sent >= len(payloads) - in_ring - 1, (
        f"the producer finished with only {received_when_sent} of {len(payloads)} "
        "payloads consumed: it did not wait for the consumer")
    # The consumer slept `delay` after each of those payloads before the producer could go on.
    assert sent_s >= (received_when_sent - 1) * delay, sent_s
    consumer.close(close_fds=False)
    ring.close()


def test_waits_time_out_and_notice_a_dead_peer() -> None:
    ring = Ring.create("t-timeout", capacity=4096, timeout_s=0.3)
    try:
        with pytest.raises(ClusterTimeoutError, match="channel timeout"):
            ring.recv()
        ring.peer_alive = lambda: False
        with pytest.raises(ChannelClosedError, match="peer went away"):
            ring.recv(timeout_s=5)
        ring.close_consumer()
        with pytest.raises(ChannelClosedError):
            ring.send(b"x")
    finally:
        ring.close()


def _memfd_entries(pid: int | str, name: str) -> dict[str, list[str]]:
    """The descriptors and mappings of process ``pid`` that are the memfd ``name``."""
    proc = Path("/proc") / str(pid)
    fds = []
    for fd in (proc / "fd").iterdir():
        with contextlib.suppress(OSError):
            if f"memfd:flink-dl-{name} " in os.readlink(fd) + " ":
                fds.append(fd.name)
    maps = [line for line in (proc / "maps").read_text().splitlines()
            if f"/memfd:flink-dl-{name} " in line + " "]
    return {"fds": fds, "maps": maps}


def test_cross_process_transfer_frees_the_memfd() -> None:
    """The ring is a memfd (never a /dev/shm file): while in use it shows in both processes'
    /proc/<pid>/fd and /proc/<pid>/maps; after close(), nothing of it is left in ours."""
    name = f"t-fork-{uuid.uuid4().hex[:8]}"
    ring = Ring.create(name, capacity=1 << 20)
    payloads = [os.urandom(n) for n in range(0, 300_000, 9_999)]
    r_fd, w_fd = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: echo checksums back through a pipe
        try:
            child = Ring(ring.handle)
            os.write(w_fd, b"R")  # mapped
            os.read(go_r, 1)
            total = 0
            while True:
                kind, data = child.recv()
                if kind is FrameKind.END:
                    break
                total += sum(data[:: 97]) + len(data)
            os.write(w_fd, str(total).encode())
        finally:
            os._exit(0)
    assert os.read(r_fd, 1) == b"R"
    in_child = _memfd_entries(pid, name)
    in_parent = _memfd_entries("self", name)
    os.write(go_w, b"G")
    for p in payloads:
        ring.send(p)
    ring.send_end()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    os.close(w_fd)
    assert int(os.read(r_fd, 100)) == sum(sum(p[:: 97]) + len(p) for p in payloads)
    for fd in (r_fd, go_r, go_w):
        os.close(fd)
    assert in_child["fds"] and in_child["maps"], in_child  # the check sees a live ring
    assert in_parent["fds"] and in_parent["maps"], in_parent
    assert not list(Path("/dev/shm").glob(f"*{name}*"))
    ring.close()
    assert _memfd_entries("self", name) == {"fds": [], "maps": []}


def test_leftovers_find_open_and_mapped_memfds() -> None:
    """tests.leftovers.memfds, which the job tests rely on, sees a job's memfd both through
    an open descriptor and through a mapping whose descriptor is already closed."""
    import mmap

    from tests.leftovers import memfds

    job = uuid.uuid4().hex
    ring = Ring.create(f"{job}-0-worker-0-in", capacity=4096)
    assert any("memfd:" in entry for entry in memfds(job))
    ring.close()
    assert memfds(job) == []
    fd = os.memfd_create(f"flink-dl-{job}-mapped")
    os.ftruncate(fd, 4096)
    mapping = mmap.mmap(fd, 4096)
    os.close(fd)
    try:
        assert [e for e in memfds(job) if "maps" in e], memfds(job)
    finally:
        mapping.close()
    assert memfds(job) == []


@pytest.mark.parametrize("name", ["arrow", "json", "pickle"])
def test_codecs_roundtrip(name: str) -> None:
    codec = get_codec(name)
    batch = _batch(10, 50)
    out = codec.decode(codec.encode(batch))
    assert out.column("id").to_pylist() == batch.column("id").to_pylist()


def test_raw_codec_and_custom_registration() -> None:
    raw = get_codec("raw")
    batch = pa.RecordBatch.from_arrays([pa.array([b"a", b"", b"xyz"], pa.binary())],
                                       names=["bytes"])
    assert raw.decode(raw.encode(batch)).column(0).to_pylist() == [b"a", b"", b"xyz"]
    with pytest.raises(ValueError, match="one binary column"):
        raw.encode(_batch(0, 2))

    class Upper(Codec):
        name = "upper-json"

        def encode(self, batch):
            return get_codec("json").encode(batch).upper()

        def decode(self, data):
            return get_codec("json").decode(bytes(data).lower())

    register_codec(Upper())
    b = pa.RecordBatch.from_pylist([{"k": "v"}])
    assert get_codec("upper-json").decode(get_codec("upper-json").encode(b)).to_pylist() == [
        {"k": "v"}]
    with pytest.raises(ConfigError, match="unknown codec 'nope'"):
        get_codec("nope")


def test_node_input_epochs_replay_from_cache(tmp_path: Path) -> None:
    ring = Ring.create("t-epochs", capacity=1 << 20)
    codec = get_codec("arrow")
    for i in range(5):
        ring.send(codec.encode(_batch(i * 100, 100)))
    ring.send_end()
    reader = NodeInput(Ring(ring.handle), codec, epochs=3, work_dir=tmp_path)
    per_epoch = []
    for epoch in reader.epochs():
        ids = [i for b in epoch for i in b.column("id").to_pylist()]
        per_epoch.append((epoch.number, len(ids), sum(ids)))
    assert per_epoch == [(e, 500, sum(range(500))) for e in range(3)]
    ring.close()


def test_schema_change_mid_stream_names_the_column(tmp_path: Path) -> None:
    ring = Ring.create("t-schema", capacity=1 << 20)
    codec = get_codec("arrow")
    ring.send(codec.encode(_batch(0, 10)))
    changed = pa.RecordBatch.from_arrays([pa.array([1], pa.int64()), pa.array(["s"])],
                                         names=["id", "x"])
    ring.send(codec.encode(changed))
    reader = NodeInput(Ring(ring.handle), codec, epochs=1, work_dir=tmp_path)
    with pytest.raises(SchemaChangedError, match=r"column 'x' changed type float -> string"):
        list(reader.batches())
    ring.close()


def test_numpy_batches_rechunk_exactly_and_reject_nulls() -> None:
    batches = [_batch(0, 7), _batch(7, 5), _batch(12, 9)]
    out = list(numpy_batches(iter(batches), 4))
    assert [len(b["id"]) for b in out] == [4, 4, 4, 4, 4, 1]
    assert np.concatenate([b["id"] for b in out]).tolist() == list(range(21))
    assert [len(b["id"]) for b in numpy_batches(iter(batches), 4, drop_last=True)] == [4] * 5
    with_null = pa.RecordBatch.from_arrays([pa.array([1.0, None, 3.0])], names=["feat"])
    with pytest.raises(NullValueError, match="column 'feat' has 1 null"):
        list(numpy_batches(iter([with_null]), 2))


def test_output_checks_name_the_column() -> None:
    ring = Ring.create("t-out", capacity=1 << 16)
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("score", pa.float32())])
    out = NodeOutput(ring, get_codec("arrow"), schema)
    out.write({"id": [1, 2], "score": [0.5, 0.25]})
    out.write([{"id": 3, "score": 1.0}])
    with pytest.raises(OutputSchemaError, match="missing \\['score'\\]"):
        out.write({"id": [1]})
    with pytest.raises(OutputSchemaError, match="output column 'score' cannot be float"):
        out.write({"id": [1], "score": ["high"]})
    with pytest.raises(NullValueError, match="output column 'id' is declared not null"):
        out.write({"id": [None], "score": [1.0]})
    with pytest.raises(OutputSchemaError, match="not in the output schema"):
        out.write([{"id": 1, "score": 1.0, "extra": 2}])
    out.close()
    codec = get_codec("arrow")
    rows = []
    while True:
        kind, data = ring.recv()
        if kind is FrameKind.END:
            break
        rows += codec.decode(data).to_pylist()
    assert rows == [{"id": 1, "score": 0.5}, {"id": 2, "score": 0.25}, {"id": 3, "score": 1.0}]
    ring.close()


def test_key_placement_matches_flink() -> None:
    # Values measured on PyFlink 2.3 (shared/pyflink-notes.md, Q7).
    assert keys_for_subtasks(4) == [4, 0, 8, 2]
    assert keys_for_subtasks(8) == [19, 4, 0, 14, 22, 8, 2, 6]
    for p in (1, 2, 3, 5, 16):
        keys = keys_for_subtasks(p)
        assert [subtask_of_key(k, p) for k in keys] == list(range(p))


def test_oversize_row_error_names_the_column() -> None:
    from flink_dl.flink.feed import PackBatches

    schema = pa.schema([("id", pa.int64()), ("blob", pa.binary())])
    pack = PackBatches(schema.serialize().to_pybytes(), [0], max_message_bytes=2000,
                       codec="arrow")
    pack.codec = get_codec("arrow")
    batch = pa.RecordBatch.from_arrays([pa.array([1, 2]), pa.array([b"a" * 10, b"b" * 5000])],
                                       schema=schema)
    with pytest.raises(ValueError, match="column 'blob' holds"):
        pack._encode(batch)
    small = pa.RecordBatch.from_arrays([pa.array(list(range(400))),
                                        pa.array([b"x"] * 400)], schema=schema)
    parts = pack._encode(small)
    assert len(parts) > 1 and all(len(p) <= 2000 for p in parts)
    decoded = [get_codec("arrow").decode(p) for p in parts]
    assert sum(b.num_rows for b in decoded) == 400
