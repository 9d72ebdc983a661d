"""A class-data-sharing (CDS) archive for the JVM that PyFlink starts, for faster start-up.

PyFlink runs the embedded mini-cluster inside its gateway JVM, which loads and verifies
some 20,000 classes (Flink's runtime, the table planner, Beam's harness) on every run. A
dynamic CDS archive (JEP 350) holds those classes already parsed and verified: the JVM
maps it instead of loading them from the jars.

- ``flink-dl jvm-archive`` (also run by ``scripts/bootstrap.sh``) builds the archive once:
  it runs a few small Flink jobs with ``-XX:ArchiveClassesAtExit``, about 40 s.
- ``flink_dl.use_jvm_archive()`` (``use_jvm_archive`` here), called before the script's
  first ``StreamExecutionEnvironment.get_execution_environment()``, then adds
  ``-XX:SharedArchiveFile=...`` to ``JVM_ARGS`` (PyFlink reads it when it launches the
  gateway) if an archive for this Java and this PyFlink exists. flink-dl's own entry points
  that start a gateway (the ``flink-dl`` command, the examples, the benchmarks) call it
  first; ``import flink_dl`` changes nothing. ``FLINK_DL_JVM_ARCHIVE=0`` turns it off.

The archive is keyed by the Java binary and the Flink jars, so another Java or PyFlink
simply has no archive yet. The JVM checks the classpath itself and silently runs without
the archive on a mismatch (``-Xshare:auto``). A truncated archive crashes the JVM (SIGBUS),
so an archive is written under a temporary name, renamed when complete, and used only
when its size matches its manifest.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from flink_dl.errors import FlinkDLError
from flink_dl.settings import ENV_NAMES, RuntimeSettings
from flink_dl.startup.client_env import without_loopback_leftovers

log = logging.getLogger(__name__)

SWITCH_ENV = ENV_NAMES["jvm_archive"]
"""``0``/``off`` turns the archive off; by default it is used when present."""
CACHE_DIR_ENV = ENV_NAMES["cache_dir"]
"""Where the archive lives; default ``$XDG_CACHE_HOME/flink-dl`` or ``~/.cache/flink-dl``."""
BUILD_TIMEOUT_ENV = ENV_NAMES["jvm_archive_build_timeout_s"]
_QUIET_CDS_LOG = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
_SILENT_CDS = ("-Xshare:auto", *_QUIET_CDS_LOG)


class JvmArchiveError(FlinkDLError):
    """Building the JVM class archive failed (the message says which step)."""


@dataclasses.dataclass(frozen=True)
class ArchiveInfo:
    """A built archive: where it is, its size, and how long the build took."""

    path: Path
    size_bytes: int
    build_seconds: float
    key: str


def cache_dir() -> Path:
    """The directory that holds flink-dl's JVM archives."""
    configured = RuntimeSettings.from_env().cache_dir
    if configured:
        return Path(configured) / "jvm"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flink-dl" / "jvm"


def _java_binary() -> Path | None:
    """The ``java`` PyFlink will start: ``$JAVA_HOME/bin/java``, else the one on ``PATH``."""
    if os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        return candidate.resolve() if candidate.exists() else None
    found = shutil.which("java")
    return Path(found).resolve() if found else None


def _flink_home() -> Path | None:
    if os.environ.get("FLINK_HOME"):
        return Path(os.environ["FLINK_HOME"])
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def archive_key() -> str | None:
    """A hash of the Java binary and the Flink jars; ``None`` without Java or PyFlink."""
    java, home = _java_binary(), _flink_home()
    if java is None or home is None:
        return None
    digest = hashlib.sha256()
    java_stat = java.stat()
    digest.update(f"{java}:{java_stat.st_size}:{java_stat.st_mtime_ns}\n".encode())
    for folder in ("lib", "opt"):
        for jar in sorted((home / folder).glob("*.jar")):
            jar_stat = jar.stat()
            digest.update(f"{jar}:{jar_stat.st_size}:{jar_stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _paths(key: str) -> tuple[Path, Path]:
    folder = cache_dir()
    return folder / f"{key}.jsa", folder / f"{key}.json"


def find_archive() -> Path | None:
    """The complete archive for this Java and PyFlink, or ``None``."""
    key = archive_key()
    if key is None:
        return None
    archive, manifest = _paths(key)
    return archive if _complete(archive, manifest) else None


def _complete(archive: Path, manifest: Path) -> bool:
    """Whether ``archive`` is whole: its size is the one its manifest recorded."""
    try:
        return archive.stat().st_size == json.loads(manifest.read_text())["size_bytes"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def jvm_args_with_archive(jvm_args: str, archive: Path) -> str:
    """``jvm_args`` plus the flags that map ``archive``; unchanged if it already names one."""
    if "SharedArchiveFile" in jvm_args or "ArchiveClassesAtExit" in jvm_args:
        return jvm_args
    return " ".join([*jvm_args.split(), f"-XX:SharedArchiveFile={archive}", *_SILENT_CDS])


def use_jvm_archive() -> Path | None:
    """Point the next PyFlink gateway JVM at the archive (via ``JVM_ARGS``) if one exists;
    exported as ``flink_dl.use_jvm_archive``. Call it before the script's first
    ``StreamExecutionEnvironment.get_execution_environment()``: it has no effect on a
    gateway that is already running. Returns the archive used (``None``: none, or
    ``FLINK_DL_JVM_ARCHIVE=0``)."""
    if not RuntimeSettings.from_env().jvm_archive:
        return None
    archive = find_archive()
    if archive is None:
        log.debug("no JVM class archive for this Java/PyFlink: `flink-dl jvm-archive` "
                  "makes Flink start faster")
        return None
    os.environ["JVM_ARGS"] = jvm_args_with_archive(os.environ.get("JVM_ARGS", ""), archive)
    return archive


def build_archive(rebuild: bool = False, timeout_s: float | None = None) -> ArchiveInfo:
    """Build the archive for this Java and PyFlink (a no-op if one exists, unless ``rebuild``).

    Runs ``flink_dl.cli.jvm_archive_warmup`` in a fresh interpreter whose gateway JVM dumps
    the classes it loaded at exit. Raises :class:`JvmArchiveError` if that fails or exceeds
    ``timeout_s`` (default ``FLINK_DL_JVM_ARCHIVE_BUILD_TIMEOUT_S`` or 600 s;
    ``SettingsError`` when that is not a number of seconds)."""
    key = archive_key()
    if key is None:
        raise JvmArchiveError("cannot build a JVM archive: no `java` (JAVA_HOME or PATH) "
                              "or no PyFlink installed")
    archive, manifest = _paths(key)
    archive.parent.mkdir(parents=True, exist_ok=True)
    timeout = (RuntimeSettings.from_env().jvm_archive_build_timeout_s if timeout_s is None
               else timeout_s)
    with open(archive.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build finishes first, then we reuse it
        if not rebuild and _complete(archive, manifest):
            meta = json.loads(manifest.read_text())
            return ArchiveInfo(archive, meta["size_bytes"], meta["build_seconds"], key)
        partial = archive.with_name(f"{key}.{os.getpid()}.partial")
        env = without_loopback_leftovers()
        env.pop("_python_worker_execution_mode", None)
        base_args = " ".join(a for a in env.get("JVM_ARGS", "").split()
                             if "SharedArchiveFile" not in a and not a.startswith("-Xlog:cds")
                             and a != "-Xshare:auto")
        env["JVM_ARGS"] = " ".join([*base_args.split(), f"-XX:ArchiveClassesAtExit={partial}",
                                    *_QUIET_CDS_LOG])
        env[SWITCH_ENV] = "0"
        log.info("building the JVM class archive (a one-off, about 40 s) into %s", archive)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-c",
                 "from flink_dl.cli.jvm_archive_warmup import run_warmup_jobs; run_warmup_jobs()"],
                env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as err:
            partial.unlink(missing_ok=True)
            raise JvmArchiveError(f"the JVM archive build exceeded {timeout:.0f} s "
                                  f"({BUILD_TIMEOUT_ENV})") from err
        seconds = time.monotonic() - started
        if done.returncode != 0 or not partial.exists() or partial.stat().st_size == 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise JvmArchiveError(f"the JVM archive build failed (rc={done.returncode}, "
                                  f"archive written: {partial.exists()}):\n{tail}")
        size = partial.stat().st_size
        os.replace(partial, archive)
        staged = manifest.with_suffix(".json.partial")
        staged.write_text(json.dumps({"size_bytes": size, "build_seconds": round(seconds, 1),
                                      "built_at": time.time(), "java": str(_java_binary()),
                                      "flink_home": str(_flink_home())}))
        os.replace(staged, manifest)
    removed = prune_stale_archives()
    log.info("JVM class archive built: %.0f MB in %.0f s%s", size / 1e6, seconds,
             f" (removed {removed} stale one(s))" if removed else "")
    return ArchiveInfo(archive, size, seconds, key)


def prune_stale_archives() -> int:
    """Remove archives whose Flink installation is gone (a deleted virtualenv); returns how
    many. Archives of other installations that still exist are kept."""
    removed = 0
    for manifest in cache_dir().glob("*.json"):
        try:
            home = json.loads(manifest.read_text()).get("flink_home")
        except (OSError, ValueError):
            continue
        if home and not Path(home).exists():
            manifest.with_suffix(".jsa").unlink(missing_ok=True)
            manifest.with_suffix(".lock").unlink(missing_ok=True)
            manifest.unlink(missing_ok=True)
            removed += 1
    return removed
