"""Exactly-once stream training: input positions in Flink state, node state on disk.

The node's operator numbers the input batches it sends to the node (1, 2, ...) and keeps
every batch the node's saved state does not cover yet in Flink keyed state; the node saves
its state (``ctx.save_state``) tagged with the position it covers, in a durable
directory. Flink checkpoints the operator's state (``seq`` = last batch sent, ``acked`` =
newest position the node has saved, ``pending`` = the batches after ``acked``) together
with the source's position, so the two always agree.

After a failure Flink restores that state and rewinds the source. The operator picks the
newest node state ``R`` with ``acked <= R <= seq`` (newer files cover batches that the
rewound source will send again, under new numbers: they are deleted), tells the node to
resume from ``R`` (the first frame of the input channel), replays the pending batches
``R+1 .. seq`` and then forwards new input. Every input row therefore reaches the model
exactly once, whatever was killed and when.

Wire format: the first frame is 8 bytes (the restore position); every data frame is the
8-byte big-endian sequence number followed by the codec's payload.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
from pathlib import Path
from typing import Any

from flink_dl.fsutil import fsync_path

_SEQ = struct.Struct(">Q")
_STATE_FILE = re.compile(r"^state-(\d{12})\.pkl$")


def encode_restore(position: int) -> bytes:
    """The first frame of an exactly-once input: the position the node resumes from."""
    return _SEQ.pack(position)


def decode_restore(data: bytes) -> int:
    """The inverse of ``encode_restore`` (``ValueError`` on a frame of the wrong size)."""
    if len(data) != _SEQ.size:
        raise ValueError(f"exactly-once input: bad restore frame of {len(data)} bytes")
    return int(_SEQ.unpack(data)[0])


def encode_sequenced(seq: int, payload: bytes | memoryview) -> bytes:
    """A data frame: the batch's 8-byte sequence number, then the codec's payload."""
    return _SEQ.pack(seq) + bytes(payload)


def split_sequenced(data: bytes) -> tuple[int, bytes]:
    """The inverse of ``encode_sequenced``: ``(seq, payload)``."""
    return int(_SEQ.unpack_from(data)[0]), data[_SEQ.size:]


def node_state_dir(checkpoint_dir: str, job_id: str, role: str, index: int) -> str:
    """Where node ``role:index`` of ``job_id`` saves its state under ``checkpoint_dir``."""
    return str(Path(checkpoint_dir) / job_id / f"{role}-{index}")


def state_positions(directory: str | Path) -> list[int]:
    """Positions of the complete state files in ``directory``, ascending."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _STATE_FILE.match(n)))


def state_path(directory: str | Path, position: int) -> Path:
    """The state file covering input up to ``position``."""
    return Path(directory) / f"state-{position:012d}.pkl"


class NodeStateStore:
    """The node process's side: save / load its state by input position.

    The directory must belong to this user and be closed to others (state files are
    unpickled: a directory others can write to would run their code)."""

    def __init__(self, directory: str, keep: int = 5) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def save(self, position: int, state: Any) -> Path:
        """Write ``state`` as covering input up to ``position`` (atomic, fsynced); keep the
        newest ``keep`` files."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        check_private(self.directory)
        path = state_path(self.directory, position)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_path(self.directory)  # the rename survives a crash of the host
        for old in state_positions(self.directory)[:-self.keep]:
            state_path(self.directory, old).unlink(missing_ok=True)
        return path

    def load(self, position: int) -> Any:
        """The state saved at ``position`` (``None`` for 0: a fresh start)."""
        if position == 0:
            return None
        check_private(self.directory)
        with open(state_path(self.directory, position), "rb") as f:
            return pickle.load(f)


def check_private(directory: Path) -> None:
    """Raise ``PermissionError`` unless ``directory`` is this user's and not writable by
    group or others."""
    info = directory.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(
            f"exactly-once state dir {directory} must belong to uid {os.getuid()} and not be "
            f"group/other-writable (owner uid {info.st_uid}, mode {oct(info.st_mode & 0o777)})")


def choose_restore(directory: str | Path, acked: int, seq: int) -> int:
    """The position to resume from after a restore of (``acked``, ``seq``); deletes state
    files newer than ``seq`` (they cover input the rewound source sends again)."""
    positions = state_positions(directory)
    for p in positions:
        if p > seq:
            state_path(directory, p).unlink(missing_ok=True)
    usable = [p for p in positions if acked <= p <= seq]
    if usable:
        return usable[-1]
    if acked == 0:
        return 0
    raise RuntimeError(
        f"exactly-once: no node state between positions {acked} and {seq} in {directory} "
        f"(found {positions}); raise add_role(state_keep=...) so state files outlive "
        "Flink's checkpoint interval")
