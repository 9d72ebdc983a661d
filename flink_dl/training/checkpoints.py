"""Training checkpoints of one job, and the model version a job warm-starts from.

Layout under ``model_dir``::

    checkpoints/<job_id>/ckpt-<step>-a<attempt>.<suffix>   one checkpoint (atomic, fsynced)
    checkpoints/<job_id>/keras-backup/                      Keras BackupAndRestore (TF)

A checkpoint belongs to its job: a new job on the same ``model_dir`` never resumes from
another job's files (a warm start from a published version is explicit: ``init_from``).
Restarts of the same job (higher attempts) resume from the newest checkpoint of any of its
attempts. Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

from flink_dl.errors import ConfigError
from flink_dl.fsutil import fsync_path
from flink_dl.models.store import MANIFEST, ModelStore, ModelVersion

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^ckpt-(\d{12})-a(\d{3,})\.(\w+)$")


def checkpoint_name(step: int, attempt: int, suffix: str) -> str:
    """The file name of the checkpoint of ``step`` written by ``attempt``."""
    return f"ckpt-{step:012d}-a{attempt:03d}.{suffix}"


class CheckpointDir:
    """The checkpoints of job ``job_id`` under ``model_dir/checkpoints/<job_id>``."""

    def __init__(self, model_dir: str | os.PathLike[str], job_id: str, keep: int = 3) -> None:
        if keep < 1:
            raise ConfigError(f"keep must be >= 1, got {keep}")
        self.path = Path(model_dir) / CHECKPOINTS / job_id
        self.keep = keep

    def write(self, write: Callable[[Path], None], *, step: int, attempt: int,
              suffix: str) -> Path:
        """``write(tmp_path)`` writes one checkpoint file; it is fsynced and renamed into
        place, then older checkpoints beyond ``keep`` are removed."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self.path / checkpoint_name(step, attempt, suffix)
        tmp = self.path / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        try:
            write(tmp)
            fsync_path(tmp)
            os.replace(tmp, final)
            fsync_path(self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._prune(suffix)
        return final

    def all(self, suffix: str) -> list[Path]:
        """This job's checkpoints with ``suffix``, oldest first (by step, then attempt)."""
        if not self.path.is_dir():
            return []
        found = []
        for entry in self.path.iterdir():
            match = _NAME.match(entry.name)
            if match and match.group(3) == suffix:
                found.append((int(match.group(1)), int(match.group(2)), entry))
        return [path for _, _, path in sorted(found)]

    def newest(self, suffix: str) -> Path | None:
        paths = self.all(suffix)
        return paths[-1] if paths else None

    def discard_after(self, step: int, attempt: int, suffix: str) -> None:
        """Delete checkpoints of steps at or after ``step`` other than (``step``,
        ``attempt``): a run that resumed from that one abandoned them."""
        for path in self.all(suffix):
            match = _NAME.match(path.name)
            assert match is not None
            key = (int(match.group(1)), int(match.group(2)))
            if key != (step, attempt) and key[0] >= step:
                path.unlink(missing_ok=True)

    def subdir(self, name: str) -> Path:
        """A directory of this job's checkpoints for a framework's own format."""
        return self.path / name

    def _prune(self, suffix: str) -> None:
        for old in self.all(suffix)[:-self.keep]:
            old.unlink(missing_ok=True)


def resolve_init_from(init_from: str | os.PathLike[str], config_name: str) -> ModelVersion:
    """The version ``init_from`` names: a version directory (``.../v000003``) or a model
    directory (its newest version now). Checksums are verified; ``ConfigError`` naming
    ``init_from`` when there is no loadable version."""
    path = Path(init_from)
    where = f"{config_name}(init_from={str(path)!r})"
    try:
        if (path / MANIFEST).is_file():
            if not re.fullmatch(r"v\d{6,}", path.name):
                raise ConfigError(f"{where}: a version directory is named v000001, v000002, ...")
            return ModelStore(path.parent).open(int(path.name[1:]))
        if not path.is_dir():
            raise ConfigError(f"{where}: no such directory")
        store = ModelStore(path)
        if store.latest_number() is None:
            raise ConfigError(f"{where}: the model directory has no published version yet")
        return store.open()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{where}: cannot open the model version: "
                          f"{type(exc).__name__}: {exc}") from exc
