"""flink-dl's run-time settings: every user switch (``FLINK_DL_*`` environment variable) in
one typed, defaulted, documented object, and the identity of a node process.

``RuntimeSettings.from_env()`` reads the switches (each call reads the environment as it is
then); no other module reads a ``FLINK_DL_*`` variable. On/off switches take ``1``/``on``/
``true``/``yes`` or ``0``/``off``/``false``/``no`` (case-insensitive; ``auto``, unset or
empty: the default); a value that does not parse raises ``SettingsError`` naming the variable.
README.md's "Settings" table lists them (``settings_table()`` renders it).

``NodeIdentity`` is the set of variables flink-dl itself gives a node's entry process
(job, attempt, role, index, the starting process and the client), written by the node
runner (``to_env``) and read by the process itself and by the leftover sweep
(``from_env``). Imports nothing of flink-dl but its errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from flink_dl.errors import ConfigError

__all__ = ["CLIENT_ENV", "ENV_NAMES", "PARENT_PID_ENV", "NodeIdentity", "RuntimeSettings",
           "SettingsError", "settings_table"]

_ON = ("1", "on", "true", "yes")
_OFF = ("0", "off", "false", "no")
#: What a parser returns for "keep the default" (``auto`` of an on/off switch).
_DEFAULT = object()


class SettingsError(ConfigError):
    """A ``FLINK_DL_*`` environment variable has a value that does not parse."""


def _parse_bool(name: str, raw: str) -> Any:
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    if value == "auto":
        return _DEFAULT
    raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(_ON + _OFF)} or auto")


def _parse_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name}={raw!r} is not a number of seconds")
    return value


def _parse_str(name: str, raw: str) -> str:
    return raw


def _setting(env: str, default: Any, parse: Callable[[str, str], Any], doc: str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class RuntimeSettings:
    """Every user switch, typed and defaulted (see the module docstring)."""

    #: Start the PyFlink gateway JVM with the class archive that ``flink-dl jvm-archive``
    #: built (start-up about 1 s faster).
    jvm_archive: bool = _setting(
        "FLINK_DL_JVM_ARCHIVE", True, _parse_bool,
        "map the JVM class archive built by `flink-dl jvm-archive` into the gateway JVM")
    #: Longest a ``flink-dl jvm-archive`` build may take.
    jvm_archive_build_timeout_s: float = _setting(
        "FLINK_DL_JVM_ARCHIVE_BUILD_TIMEOUT_S", 600.0, _parse_seconds,
        "seconds a `flink-dl jvm-archive` build may take")
    #: Where flink-dl keeps its caches (the JVM archives under ``jvm/``); ``None``:
    #: ``$XDG_CACHE_HOME/flink-dl`` or ``~/.cache/flink-dl``.
    cache_dir: str | None = _setting(
        "FLINK_DL_CACHE_DIR", None, _parse_str,
        "flink-dl's cache directory (JVM archives); default `$XDG_CACHE_HOME/flink-dl` "
        "or `~/.cache/flink-dl`")
    #: Start loopback-mode Python workers with flink-dl's light launcher instead of
    #: PyFlink's Beam launcher.
    light_launcher: bool = _setting(
        "FLINK_DL_LIGHT_LAUNCHER", True, _parse_bool,
        "start local (loopback) Python workers with the light launcher, not Beam's")
    #: How long the light launcher waits for the client to start a worker.
    loopback_boot_timeout_s: float = _setting(
        "FLINK_DL_LOOPBACK_BOOT_TIMEOUT_S", 120.0, _parse_seconds,
        "seconds the light launcher waits for the client to start a Python worker")
    #: Keep PyFlink's one Python worker shared by every operator of a slot.
    shared_python_worker: bool = _setting(
        "FLINK_DL_SHARED_PYTHON_WORKER", False, _parse_bool,
        "keep PyFlink's shared Python worker (flink-dl's operators get their own)")
    #: Keep Beam's state sampler thread in Python workers.
    sampler_thread: bool = _setting(
        "FLINK_DL_SAMPLER_THREAD", False, _parse_bool,
        "keep Beam's state sampler thread in Python workers")
    #: Keep Beam's tracebacks of a job's end (Flink hanging up its Python workers).
    hangup_tracebacks: bool = _setting(
        "FLINK_DL_HANGUP_TRACEBACKS", False, _parse_bool,
        "print Beam's tracebacks when a job ends (Flink hanging up its Python workers)")
    #: Tune glibc's allocator in flink-dl's processes (unless the user tuned it).
    malloc_tuning: bool = _setting(
        "FLINK_DL_MALLOC_TUNING", True, _parse_bool,
        "tune glibc malloc in flink-dl's processes (unless already tuned)")
    #: Start entry processes ahead of their nodes: ``True``/``False`` force it; ``None``
    #: (``auto``): on the embedded mini-cluster, where cores are spare.
    prewarm: bool | None = _setting(
        "FLINK_DL_PREWARM", None, _parse_bool,
        "start training entry processes while Flink deploys: `auto` (where cores are "
        "spare), `1` or `0`")
    #: Share one model copy between the consumers of a predicted column.
    shared_predict: bool = _setting(
        "FLINK_DL_SHARED_PREDICT", True, _parse_bool,
        "one model copy shared by every consumer of a predicted column")
    #: The interpreter for node entry processes; ``None``: this one.
    node_python: str | None = _setting(
        "FLINK_DL_NODE_PYTHON", None, _parse_str,
        "the Python interpreter for node entry processes (default: the running one)")
    #: The log level of node entry processes.
    log_level: str = _setting(
        "FLINK_DL_LOG_LEVEL", "INFO", _parse_str, "log level of node entry processes")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        """The settings of ``environ`` (default ``os.environ``); unset or empty variables
        keep their default."""
        source = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = source.get(f.metadata["env"], "")
            value = f.metadata["parse"](f.metadata["env"], raw) if raw.strip() else _DEFAULT
            if value is not _DEFAULT:
                values[f.name] = value
        return cls(**values)


#: Setting name -> its environment variable.
ENV_NAMES: Mapping[str, str] = {f.name: f.metadata["env"] for f in fields(RuntimeSettings)}


def settings_table() -> str:
    """The Markdown table of every switch (README.md's "Settings" section)."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for f in fields(RuntimeSettings):
        default = {True: "`1`", False: "`0`", None: "`auto`" if f.name == "prewarm" else "-"
                   }.get(f.default, f"`{f.default:g}`" if isinstance(f.default, float)
                         else f"`{f.default}`")
        rows.append(f"| `{f.metadata['env']}` | {default} | {f.metadata['doc']} |")
    return "\n".join(rows)


#: The process that started a node's entry process (it exits if that one is gone).
PARENT_PID_ENV = "FLINK_DL_PARENT_PID"
#: The client that built the job, as ``pid:start time`` (its nodes are orphans once it is
#: gone); set on the embedded mini-cluster only.
CLIENT_ENV = "FLINK_DL_CLIENT"
_IDENTITY_ENV = {"job_id": "FLINK_DL_JOB_ID", "attempt": "FLINK_DL_ATTEMPT",
                 "role": "FLINK_DL_ROLE", "index": "FLINK_DL_INDEX",
                 "parent_pid": PARENT_PID_ENV, "client": CLIENT_ENV}


@dataclass(frozen=True)
class NodeIdentity:
    """Who a node's entry process is, as flink-dl passes it in the environment
    (``FLINK_DL_JOB_ID``, ``FLINK_DL_ATTEMPT``, ``FLINK_DL_ROLE``, ``FLINK_DL_INDEX``,
    ``FLINK_DL_PARENT_PID``, ``FLINK_DL_CLIENT``); ``None``: not set."""

    job_id: str | None = None
    attempt: int | None = None
    role: str | None = None
    index: int | None = None
    #: The process that started it.
    parent_pid: int | None = None
    #: The client that built the job (``"pid:start time"``).
    client: str | None = None

    def to_env(self) -> dict[str, str]:
        """The variables of the fields that are set."""
        return {_IDENTITY_ENV[f.name]: str(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NodeIdentity:
        """The identity in ``environ`` (default ``os.environ``; another process's
        environment for the leftover sweep); a missing or malformed number is ``None``."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, env in _IDENTITY_ENV.items():
            raw = source.get(env)
            if raw is None:
                continue
            if name in ("attempt", "index", "parent_pid"):
                try:
                    values[name] = int(raw)
                except ValueError:
                    continue
            else:
                values[name] = raw
        return cls(**values)
