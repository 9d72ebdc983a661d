"""``python -m flink_dl.startup.loopback_boot --id ID --provision_endpoint URL``: ask the
client's loopback worker pool to start Python worker ``ID``, as PyFlink's ``beam_boot``
does in loopback mode, with gRPC alone (no Beam import).

The request is Beam's ``StartWorkerRequest`` (``worker_id`` = 1, ``provision_endpoint`` = 5
holding an ``ApiServiceDescriptor`` whose ``url`` = 1, ``params`` = 10 as a map of strings),
encoded by hand; ``tests/test_loopback_launcher.py`` checks it against Beam's own message.
"""

from __future__ import annotations

import argparse
import os
import sys

try:  # run by path, where flink_dl may not be importable: then a plain ValueError
    from flink_dl.errors import CorruptDataError
except ImportError:  # pragma: no cover - depends on the worker's PYTHONPATH
    CorruptDataError = ValueError  # type: ignore[misc,assignment]

START_WORKER = "/org.apache.beam.model.fn_execution.v1.BeamFnExternalWorkerPool/StartWorker"
#: Seconds to wait for the client to start the worker, unless the launcher passes
#: ``--boot_timeout`` (``RuntimeSettings.loopback_boot_timeout_s``).
DEFAULT_TIMEOUT_S = 120.0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | 0x80 if value else low)
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings, messages, map entries)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def start_worker_request(worker_id: str, provision_url: str, params: dict[str, str]) -> bytes:
    """Beam's ``StartWorkerRequest`` as protobuf bytes."""
    entries = b"".join(_field(10, _field(1, key.encode()) + _field(2, value.encode()))
                       for key, value in params.items())
    return (_field(1, worker_id.encode()) + _field(5, _field(1, provision_url.encode()))
            + entries)


def response_error(payload: bytes) -> str:
    """The ``error`` (field 1) of a ``StartWorkerResponse``; empty when it started."""
    position = 0
    while position < len(payload):
        tag, position = _read_varint(payload, position)
        if tag & 7 != 2:
            raise CorruptDataError(f"unexpected wire type {tag & 7} in StartWorkerResponse")
        length, position = _read_varint(payload, position)
        if tag >> 3 == 1:
            return payload[position:position + length].decode(errors="replace")
        position += length
    return ""


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flink_dl.startup.loopback_boot")
    parser.add_argument("--id", required=True)
    parser.add_argument("--provision_endpoint", required=True)
    parser.add_argument("--semi_persist_dir", default="/tmp")
    parser.add_argument("--boot_timeout", type=float, default=DEFAULT_TIMEOUT_S)
    args = parser.parse_known_args(argv)[0]
    import grpc

    params = {**os.environ, "SEMI_PERSISTENT_DIRECTORY": args.semi_persist_dir}
    request = start_worker_request(args.id, args.provision_endpoint, params)
    timeout = args.boot_timeout
    with grpc.insecure_channel(os.environ["PYTHON_LOOPBACK_SERVER_ADDRESS"]) as channel:
        call = channel.unary_unary(START_WORKER)
        error = response_error(call(request, timeout=timeout))
    if error:
        print(f"flink-dl loopback boot: starting Python worker {args.id} failed: {error}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
