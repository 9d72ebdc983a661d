"""The default rendezvous store: a directory of small JSON files, one scope per job.

The AM writes ``am-<attempt>.json`` (its address) atomically; nodes of the same job and
attempt poll for it. Jobs use it only when they name it (``rendezvous="file"``) or for
exactly-once roles (under their ``checkpoint_dir``); by default the AM's address travels
through the dataflow. The default directory, under the system temp dir, is shared only
by the TaskManagers of one host; on several hosts point ``rendezvous_dir`` at a shared
filesystem or register another store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flink_dl.cluster.api import RendezvousStore

log = logging.getLogger(__name__)


def default_rendezvous_root() -> Path:
    return Path(tempfile.gettempdir()) / f"flink-dl-rendezvous-{os.getuid()}"


class FileStore(RendezvousStore):
    """A rendezvous store in ``<root>/<job_id>/``, directories 0700 and files 0600."""

    def __init__(self, job_id: str, root: str | None = None) -> None:
        self.root = Path(root) if root else default_rendezvous_root()
        self.scope = self.root / job_id

    def _ensure_scope(self) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for directory in (self.root, self.scope):
            directory.mkdir(mode=0o700, exist_ok=True)
            _check_private(directory)

    def _path(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"invalid rendezvous key {key!r}")
        return self.scope / f"{key}.json"

    def publish(self, key: str, value: Mapping[str, Any]) -> None:
        self._ensure_scope()
        fd, tmp = tempfile.mkstemp(dir=self.scope, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(dict(value), f)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def lookup(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if st.st_uid != os.getuid():
            log.warning("ignoring rendezvous file %s not owned by this user", path)
            return None
        with path.open() as f:
            return json.load(f)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def close(self) -> None:
        # Absent, or other attempts' entries are still there: both fine.
        with contextlib.suppress(OSError):
            self.scope.rmdir()


def _check_private(directory: Path) -> None:
    st = directory.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"rendezvous directory {directory} is not owned by this user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(directory, 0o700)
