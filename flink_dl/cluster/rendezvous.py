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
import socket
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flink_dl.cluster.api import RendezvousStore
from flink_dl.errors import ConfigError, OwnershipError

log = logging.getLogger(__name__)


#: In every file the store writes: ``[host, pid, start time]`` of the writing process.
OWNER_KEY = "flink_dl_owner"


def default_rendezvous_root() -> Path:
    return Path(tempfile.gettempdir()) / f"flink-dl-rendezvous-{os.getuid()}"


def orphaned_scopes(root: str | Path | None = None) -> list[Path]:
    """Job scopes under ``root`` (default: ``default_rendezvous_root()``) whose every file
    was written by a process of this host that is gone (the AM's, of a job whose client or
    Python worker died): nothing will read or remove them."""
    from flink_dl.cluster.leftovers import is_alive

    base = Path(root) if root else default_rendezvous_root()
    host = socket.gethostname()
    found = []
    for scope in base.glob("*") if base.is_dir() else ():
        try:
            mine = scope.is_dir() and scope.stat().st_uid == os.getuid()
            files = list(scope.glob("*.json")) if mine else []
        except OSError:
            files = []
        if not files:
            continue  # empty or being written: not judged
        owners = []
        for path in files:
            try:
                owner = json.loads(path.read_text()).get(OWNER_KEY)
                owner_host, pid, started = owner
                owners.append((owner_host, int(pid), float(started)))
            except (OSError, ValueError, TypeError, AttributeError):
                owners.append(None)
        if all(o is not None and o[0] == host and not is_alive((o[1], o[2]))
               for o in owners):
            found.append(scope)
    return found


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
            raise ConfigError(f"invalid rendezvous key {key!r}")
        return self.scope / f"{key}.json"

    def publish(self, key: str, value: Mapping[str, Any]) -> None:
        """Write ``value`` under ``key``, with its writer (``OWNER_KEY``: host, pid and start
        time) for ``orphaned_scopes``."""
        from flink_dl.cluster.leftovers import process_ref

        self._ensure_scope()
        pid, started = process_ref()
        record = {**dict(value), OWNER_KEY: [socket.gethostname(), pid, started]}
        fd, tmp = tempfile.mkstemp(dir=self.scope, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
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
            value = json.load(f)
        if isinstance(value, dict):
            value.pop(OWNER_KEY, None)  # the store's own stamp, not the publisher's value
        return value

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def close(self) -> None:
        # Absent, or other attempts' entries are still there: both fine.
        with contextlib.suppress(OSError):
            self.scope.rmdir()


def _check_private(directory: Path) -> None:
    st = directory.stat()
    if st.st_uid != os.getuid():
        raise OwnershipError(f"rendezvous directory {directory} is not owned by this user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(directory, 0o700)
