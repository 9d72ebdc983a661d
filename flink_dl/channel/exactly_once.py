"""Exactly-once stream training: input positions in Flink state, node state on disk.

The node's operator numbers the input batches it sends to the node (1, 2, ...) and keeps
every batch the node's saved state does not cover yet in Flink keyed state; the node saves
its state tagged with the position it covers, in a durable directory. Flink checkpoints
the operator's state (``seq`` = last batch sent, ``acked`` = newest position the node has
saved, ``pending`` = the batches after ``acked``) together with the source's position, so
the two always agree.

After a failure Flink restores that state and rewinds the source. The operator tells the
node the restored range (``acked``, ``seq``: the first frame of the input channel) and
replays the pending batches ``acked+1 .. seq``; the node resumes from the newest saved
state ``R`` with ``acked <= R <= seq`` (newer files cover batches the rewound source sends
again, under new numbers: they are deleted) and skips the replayed batches ``R`` covers.
Every input row therefore reaches the model exactly once, whatever was killed and when.

Two kinds of saved state:

* one node on its own (``ctx.save_state``): ``state-<position>.pkl``, the entry's state;
* ranks of one data-parallel model (``flink_dl.training.exactly_once``): the model is one
  checkpoint of every rank's input, so each rank records its position per checkpoint step
  in ``pos-<step>-a<attempt>.json`` once every rank has reached that step, and the ranks
  resume from the newest step every one of them can. Each position also carries *marks*:
  the packing operators number their messages (``nonce``, ``counter``), and a rank's
  operator drops batches only when it has itself received every message the ranks had
  read at that step. Flink's barriers follow the messages in order, so whatever checkpoint
  holds the dropped state also holds, for every other rank, the batches of that step: the
  ranks' restored ranges always share a step (a DDP step is a channel between the ranks
  that Flink does not see; the marks carry it into the dataflow's order).

Wire format: the first frame is 16 bytes (``acked``, ``seq``); every data frame is the
8-byte big-endian sequence number, the 16-byte mark (zero for replayed batches) and the
codec's payload. Packed messages (operator input) start with the 16-byte mark.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flink_dl.errors import CorruptDataError, InvalidStateError, OwnershipError
from flink_dl.fsutil import fsync_path

_SEQ = struct.Struct(">Q")
_RANGE = struct.Struct(">QQ")
_MARK = struct.Struct(">QQ")
_FRAME = struct.Struct(">QQQ")
_STATE_FILE = re.compile(r"^state-(\d{12})\.pkl$")
_POSITION_FILE = re.compile(r"^pos-(\d{12})-a(\d{3,})\.json$")

#: Bytes a mark adds to a packed message; bytes of a data frame's header.
MARK_BYTES = _MARK.size
FRAME_BYTES = _FRAME.size
#: A packing operator's message number: (nonce of that operator instance, counter).
Mark = tuple[int, int]
NO_MARK: Mark = (0, 0)


def encode_restore(acked: int, seq: int) -> bytes:
    """The first frame of an exactly-once input: the restored range ``(acked, seq)``."""
    return _RANGE.pack(acked, seq)


def decode_restore(data: bytes) -> tuple[int, int]:
    """The inverse of ``encode_restore`` (``ValueError`` on a frame of the wrong size)."""
    if len(data) != _RANGE.size:
        raise CorruptDataError(f"exactly-once input: bad restore frame of {len(data)} bytes")
    acked, seq = _RANGE.unpack(data)
    return int(acked), int(seq)


def encode_marked(mark: Mark, payload: bytes | memoryview) -> bytes:
    """A packed message: the packing operator's mark, then the codec's payload."""
    return _MARK.pack(*mark) + bytes(payload)


def split_marked(data: bytes | memoryview) -> tuple[Mark, memoryview]:
    """The inverse of ``encode_marked``."""
    view = memoryview(data)
    nonce, counter = _MARK.unpack_from(view)
    return (int(nonce), int(counter)), view[_MARK.size:]


def encode_sequenced(seq: int, payload: bytes | memoryview, mark: Mark = NO_MARK) -> bytes:
    """A data frame: the batch's sequence number, its mark, then the codec's payload."""
    return _FRAME.pack(seq, *mark) + bytes(payload)


def split_sequenced(data: bytes) -> tuple[int, Mark, bytes]:
    """The inverse of ``encode_sequenced``: ``(seq, mark, payload)``."""
    seq, nonce, counter = _FRAME.unpack_from(data)
    return int(seq), (int(nonce), int(counter)), data[_FRAME.size:]


def marks_covered(marks: dict[int, int], received: dict[int, int]) -> bool:
    """Whether every message named by ``marks`` (nonce -> highest counter) was received."""
    return all(received.get(nonce, -1) >= counter for nonce, counter in marks.items())


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


@dataclass(frozen=True)
class RankPosition:
    """Where one rank's input stood at a checkpoint step: every batch up to ``seq`` and
    ``offset`` rows of batch ``seq + 1`` were trained on. Recorded when the checkpoint is
    written (``marks``: this rank's newest messages); ``committed`` once every rank has
    recorded the step (``marks``: the newest messages any rank had read), which is when
    the operator may drop the batches it covers."""

    step: int
    attempt: int
    seq: int
    offset: int = 0
    marks: dict[int, int] = field(default_factory=dict)
    committed: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return self.step, self.attempt

    @property
    def needs(self) -> int:
        """The last batch this position needs to have been sent (a partly read one too)."""
        return self.seq + (1 if self.offset else 0)

    def usable(self, acked: int, seq: int) -> bool:
        """Whether a restored range (``acked``, ``seq``) can resume from here."""
        return acked <= self.seq and self.needs <= seq


def position_path(directory: str | Path, step: int, attempt: int) -> Path:
    return Path(directory) / f"pos-{step:012d}-a{attempt:03d}.json"


def write_position(directory: str | Path, position: RankPosition, keep: int) -> Path:
    """Record a step's position (atomic, fsynced); keep the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_private(directory)
    path = position_path(directory, position.step, position.attempt)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps({"step": position.step, "attempt": position.attempt,
                       "seq": position.seq, "offset": position.offset,
                       "marks": {str(k): v for k, v in position.marks.items()},
                       "committed": position.committed})
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(directory)
    for old in read_positions(directory)[:-keep]:
        position_path(directory, old.step, old.attempt).unlink(missing_ok=True)
    return path


def read_positions(directory: str | Path,
                   cache: dict[str, RankPosition] | None = None) -> list[RankPosition]:
    """The recorded positions in ``directory``, oldest step first (JSON, never
    unpickled: the operator reads them). ``cache`` keeps parsed committed files."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not _POSITION_FILE.match(name):
            continue
        if cache is not None and name in cache:
            found.append(cache[name])
            continue
        try:
            data = json.loads((Path(directory) / name).read_text())
        except (OSError, ValueError):
            continue  # deleted meanwhile
        position = RankPosition(int(data["step"]), int(data["attempt"]), int(data["seq"]),
                                int(data["offset"]),
                                {int(k): int(v) for k, v in data["marks"].items()},
                                bool(data["committed"]))
        if cache is not None and position.committed:  # final: it is not rewritten
            cache[name] = position
        found.append(position)
    return sorted(found, key=lambda p: p.key)


def prunable_position(directory: str | Path, seq: int, received: dict[int, int],
                      attempt: int, cache: dict[str, RankPosition] | None = None) -> int:
    """The newest batch number the node's saved state lets the operator drop: the newest
    ``state-*`` position up to ``seq``, or the ``seq`` of the newest committed rank
    position of this ``attempt`` (older ones may belong to a step the ranks did not resume
    from) whose batches were all sent and whose marks this operator has received (0:
    none)."""
    newest = max((p for p in state_positions(directory) if p <= seq), default=0)
    for position in read_positions(directory, cache):
        if position.committed and position.attempt == attempt and position.needs <= seq \
                and marks_covered(position.marks, received):
            newest = max(newest, position.seq)
    return newest


def check_private(directory: Path) -> None:
    """Raise ``PermissionError`` unless ``directory`` is this user's and not writable by
    group or others."""
    info = directory.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise OwnershipError(
            f"exactly-once state dir {directory} must belong to uid {os.getuid()} and not be "
            f"group/other-writable (owner uid {info.st_uid}, mode {oct(info.st_mode & 0o777)})")


def choose_restore(directory: str | Path, acked: int, seq: int) -> int:
    """The ``state-*`` position a single node resumes from after a restore of (``acked``,
    ``seq``); deletes state files newer than ``seq`` (they cover input the rewound source
    sends again)."""
    positions = state_positions(directory)
    for p in positions:
        if p > seq:
            state_path(directory, p).unlink(missing_ok=True)
    usable = [p for p in positions if acked <= p <= seq]
    if usable:
        return usable[-1]
    if acked == 0:
        return 0
    raise InvalidStateError(
        f"exactly-once: no node state between positions {acked} and {seq} in {directory} "
        f"(found {positions}); raise add_role(state_keep=...) so state files outlive "
        "Flink's checkpoint interval")
