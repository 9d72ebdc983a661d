"""Codecs: how a batch of rows becomes the bytes of one channel message, and back.

A codec turns a ``pyarrow.RecordBatch`` into bytes and back. Registered by name:

* ``arrow`` (default): Arrow IPC stream (schema + one batch); decoding does not copy.
* ``json``: JSON rows (``[{"col": value, ...}, ...]``), for small control-ish streams.
* ``raw``: one ``binary`` column called ``bytes``; each row's bytes as they are.
* ``pickle``: only when chosen by name; never the default.

Users register their own with ``register_codec(MyCodec())``.
"""

from __future__ import annotations

import json
import pickle
from abc import ABC, abstractmethod

import pyarrow as pa

from flink_dl.errors import ArgumentTypeError, ConfigError, CorruptDataError


class Codec(ABC):
    """Encodes a record batch into one message and decodes it again."""

    name: str = "abstract"

    @abstractmethod
    def encode(self, batch: pa.RecordBatch) -> bytes | memoryview | pa.Buffer:
        """Bytes of one message holding every row of ``batch``."""

    @abstractmethod
    def decode(self, data: bytes | memoryview | pa.Buffer) -> pa.RecordBatch:
        """The batch held by one message."""


class ArrowCodec(Codec):
    """Arrow IPC stream: schema plus one record batch per message (zero-copy decode)."""

    name = "arrow"

    def encode(self, batch: pa.RecordBatch) -> pa.Buffer:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return sink.getvalue()

    def decode(self, data: bytes | memoryview | pa.Buffer) -> pa.RecordBatch:
        buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
        reader = pa.ipc.open_stream(buf)
        batches = list(reader)
        if len(batches) != 1:
            raise CorruptDataError(f"arrow message holds {len(batches)} batches, expected 1")
        return batches[0]


class JsonCodec(Codec):
    """JSON rows. Types are JSON's: ints, floats, strings, bools, nulls, lists, objects."""

    name = "json"

    def encode(self, batch: pa.RecordBatch) -> bytes:
        return json.dumps(batch.to_pylist(), separators=(",", ":")).encode()

    def decode(self, data: bytes | memoryview | pa.Buffer) -> pa.RecordBatch:
        rows = json.loads(bytes(data))
        return pa.RecordBatch.from_pylist(rows)


class RawCodec(Codec):
    """A batch with one ``binary`` column named ``bytes``: length-prefixed rows."""

    name = "raw"

    def encode(self, batch: pa.RecordBatch) -> bytes:
        if batch.schema.names != ["bytes"] or not pa.types.is_binary(batch.schema.types[0]):
            raise ConfigError(
                f"the raw codec carries one binary column named 'bytes'; got {batch.schema}")
        out = bytearray()
        for value in batch.column(0).to_pylist():
            if value is None:
                raise ConfigError("the raw codec cannot carry a null in column 'bytes'")
            out += len(value).to_bytes(4, "little") + value
        return bytes(out)

    def decode(self, data: bytes | memoryview | pa.Buffer) -> pa.RecordBatch:
        view = memoryview(bytes(data))
        rows, i = [], 0
        while i < len(view):
            n = int.from_bytes(view[i:i + 4], "little")
            rows.append(bytes(view[i + 4:i + 4 + n]))
            i += 4 + n
        return pa.RecordBatch.from_arrays([pa.array(rows, pa.binary())], names=["bytes"])


class PickleCodec(Codec):
    """Pickled record batches. Only for channels between processes of one job; opt-in."""

    name = "pickle"

    def encode(self, batch: pa.RecordBatch) -> bytes:
        return pickle.dumps(batch, protocol=5)

    def decode(self, data: bytes | memoryview | pa.Buffer) -> pa.RecordBatch:
        return pickle.loads(bytes(data))


_CODECS: dict[str, Codec] = {}


def register_codec(codec: Codec) -> None:
    """Make ``codec`` available under ``codec.name``."""
    if not isinstance(codec, Codec):
        raise ArgumentTypeError(f"codec must be a flink_dl.channel.codecs.Codec, got {type(codec)}")
    _CODECS[codec.name] = codec


def get_codec(name: str) -> Codec:
    try:
        return _CODECS[name]
    except KeyError:
        raise ConfigError(f"codec: unknown codec {name!r}; known: {sorted(_CODECS)}") from None


for _codec in (ArrowCodec(), JsonCodec(), RawCodec(), PickleCodec()):
    register_codec(_codec)
