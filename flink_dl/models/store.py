"""A directory of model versions, each published atomically.

Layout::

    <root>/v000001/              one version: the framework's files + manifest.json
    <root>/v000002/
    <root>/LATEST                the newest version's name (replaced atomically)
    <root>/checkpoints/          training checkpoints (see the framework plugins)

A version is written into a hidden temporary directory, fsynced, given a manifest with the
SHA-256 of every file, and renamed into place: a reader never sees a half-written version,
and ``open`` re-checks the checksums. One writer per store (the chief rank).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flink_dl.errors import ConfigError, FlinkDLError, NotFoundError, WaitTimeoutError
from flink_dl.fsutil import fsync_path

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LATEST = "LATEST"
_VERSION_DIR = re.compile(r"^v(\d{6,})$")


class TornModelError(FlinkDLError):
    """A model version's files do not match its manifest (names the file)."""


@dataclass(frozen=True)
class ModelVersion:
    """One published version: its number, directory and what the trainer said of it."""

    version: int
    path: str
    step: int = 0
    epoch: int = 0
    created_ms: int = 0
    framework: str = ""
    files: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def file(self, name: str) -> Path:
        return Path(self.path) / name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ModelStore:
    """Publishes and opens versions under ``root`` (created 0700 if missing).

    ``keep_last``: after each publish, remove the versions older than the newest
    ``keep_last`` (``None``: keep all), except those published less than ``keep_for_s``
    seconds ago (a reader that saw them as the newest may still be opening them)."""

    def __init__(self, root: str | os.PathLike[str], keep_last: int | None = None, *,
                 keep_for_s: float = 0.0) -> None:
        if keep_last is not None and keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1 or None, got {keep_last}")
        if keep_for_s < 0:
            raise ConfigError(f"keep_for_s must be >= 0 seconds, got {keep_for_s}")
        self.root = Path(root)
        self.keep_last = keep_last
        self.keep_for_s = keep_for_s

    # ---------------------------------------------------------------- writing
    def publish(self, write: Callable[[Path], None], *, step: int = 0, epoch: int = 0,
                framework: str = "", metrics: Mapping[str, Any] | None = None) -> ModelVersion:
        """Create the next version: ``write(tmp_dir)`` puts the model files in ``tmp_dir``."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # past LATEST and past every version directory: a writer killed between renaming
        # its version into place and moving LATEST left a directory LATEST does not name
        number = max([self.latest_number() or 0,
                      *self.version_numbers(complete_only=False)]) + 1
        tmp = self.root / f".tmp-v{number:06d}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(mode=0o700)
        try:
            write(tmp)
            files = {p.relative_to(tmp).as_posix(): _sha256(p)
                     for p in sorted(tmp.rglob("*")) if p.is_file()}
            if not files:
                raise FlinkDLError("publishing a model version: the writer produced no files")
            final = self.root / f"v{number:06d}"
            version = ModelVersion(number, str(final), step, epoch, int(time.time() * 1000),
                                   framework, files, dict(metrics or {}))
            (tmp / MANIFEST).write_text(json.dumps(version.to_json(), default=str))
            for path in sorted(tmp.rglob("*"), reverse=True):  # files before their dirs
                fsync_path(path)
            fsync_path(tmp)
            os.rename(tmp, final)
            fsync_path(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._point_latest(final.name)
        self._prune()
        log.debug("published model version %d (step %d) at %s", number, step, final)
        return version

    def _point_latest(self, name: str) -> None:
        tmp = self.root / f".{LATEST}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(name)
        fsync_path(tmp)
        os.replace(tmp, self.root / LATEST)

    def _prune(self) -> None:
        if self.keep_last is None:
            return
        now = time.time()
        for number in self.version_numbers()[:-self.keep_last]:
            path = self.root / f"v{number:06d}"
            try:
                if self.keep_for_s and now - path.stat().st_mtime < self.keep_for_s:
                    continue
            except FileNotFoundError:  # another pruner was first
                continue
            shutil.rmtree(path, ignore_errors=True)

    # ---------------------------------------------------------------- reading
    def version_numbers(self, complete_only: bool = True) -> list[int]:
        """Numbers of the version directories, ascending: those with a manifest, or
        (``complete_only=False``) every one, torn ones too."""
        if not self.root.is_dir():
            return []
        numbers = []
        for entry in self.root.iterdir():
            match = _VERSION_DIR.match(entry.name)
            if match and (not complete_only or (entry / MANIFEST).is_file()):
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def latest_number(self) -> int | None:
        """The newest version's number (``LATEST``, else the highest directory)."""
        try:
            match = _VERSION_DIR.match((self.root / LATEST).read_text().strip())
            if match:
                return int(match.group(1))
        except OSError:
            pass
        numbers = self.version_numbers()
        return numbers[-1] if numbers else None

    def versions(self) -> list[ModelVersion]:
        return [self.open(n, verify=False) for n in self.version_numbers()]

    def open(self, number: int | None = None, verify: bool = True) -> ModelVersion:
        """Version ``number`` (default: the latest), checksums verified unless told not to."""
        if number is None:
            number = self.latest_number()
            if number is None:
                raise NotFoundError(f"model store {self.root} has no version yet")
        path = self.root / f"v{number:06d}"
        data = json.loads((path / MANIFEST).read_text())
        data["path"] = str(path)
        version = ModelVersion(**data)
        if verify:
            for name, digest in version.files.items():
                actual = _sha256(path / name)
                if actual != digest:
                    raise TornModelError(f"model version {number}: file {name!r} has sha256 "
                                         f"{actual[:12]}…, its manifest says {digest[:12]}…")
        return version

    def wait_for_version(self, timeout_s: float, poll_s: float = 0.2) -> ModelVersion:
        """Block until a version exists (``timeout_s``), then open the latest."""
        deadline = time.monotonic() + timeout_s
        while self.latest_number() is None:
            if time.monotonic() > deadline:
                raise WaitTimeoutError(f"no model version appeared in {self.root} within "
                                       f"{timeout_s}s (model_wait_s)")
            time.sleep(poll_s)
        return self.open()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def store_for(model_dir: str | None, keep_last: int | None, config_name: str) -> ModelStore:
    """The model store of a training job; ``ConfigError`` naming the setting when unset."""
    if not model_dir:
        raise ConfigError(f"model_dir is not set: pass {config_name}(model_dir=...) to save "
                          "models or checkpoints")
    return ModelStore(model_dir, keep_last=keep_last)
