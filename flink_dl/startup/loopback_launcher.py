"""A light launcher for PyFlink's loopback Python workers.

In loopback mode (PyFlink's local default) the Python operators run as threads of the
client, but Flink still starts, for every slot, ``pyflink-udf-runner.sh`` ->
``python -m pyflink.fn_execution.beam.beam_boot``, a process whose only job is one gRPC
call asking the client to start that worker thread. Importing Beam for it costs about 1.9 s
of CPU per slot (measured), at the moment Flink deploys the job, which on a small machine
delays everything else.

``apply(j_config)`` points ``python.executable`` of a local loopback job at a generated
shell script: for ``-m pyflink.fn_execution.beam.beam_boot`` with
``PYTHON_LOOPBACK_SERVER_ADDRESS`` set it runs :mod:`flink_dl.startup.loopback_boot` by file
path (the same call, with gRPC only: about 0.15 s); anything else it hands to the real
interpreter unchanged. Only a job whose ``python.executable`` is unset or this interpreter
is changed; ``FLINK_DL_LIGHT_LAUNCHER=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from flink_dl.errors import OwnershipError
from flink_dl.settings import ENV_NAMES, RuntimeSettings

log = logging.getLogger(__name__)

SWITCH_ENV = ENV_NAMES["light_launcher"]
PYTHON_EXECUTABLE = "python.executable"
BEAM_BOOT = "pyflink.fn_execution.beam.beam_boot"
_SCRIPT = """#!/bin/sh
# flink-dl: PyFlink's Python worker launcher (flink_dl/startup/loopback_launcher.py).
if [ "$1" = "-m" ] && [ "$2" = "{boot}" ] && [ -n "$PYTHON_LOOPBACK_SERVER_ADDRESS" ]; then
  shift 2
  exec {python} -P {boot_script} --boot_timeout {timeout} "$@"
fi
exec {python} "$@"
"""


def launcher_for(python: str) -> Path:
    """The launcher script that wraps ``python`` (written once, owner-only)."""
    from flink_dl.startup import loopback_boot

    # run by path (-P: its folder stays off sys.path): it imports only the standard library
    # and grpc, not flink_dl, which the worker's PYTHONPATH may lack when the client found
    # it through its own sys.path
    timeout = RuntimeSettings.from_env().loopback_boot_timeout_s
    text = _SCRIPT.format(boot=BEAM_BOOT, python=shlex.quote(python), timeout=repr(timeout),
                          boot_script=shlex.quote(str(Path(loopback_boot.__file__).resolve())))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"flink-dl-launcher-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise OwnershipError(f"{folder} belongs to another user")
    script = folder / f"python-{digest}"
    if not script.exists() or script.read_text() != text:
        staged = script.with_name(f"{script.name}.{os.getpid()}")
        staged.write_text(text)
        staged.chmod(0o700)
        os.replace(staged, script)
    return script


def local_python_mode(j_config: Any) -> str | None:
    """How the job of ``j_config`` (a Java ``Configuration``) runs its Python workers on the
    local mini-cluster: ``"loopback"`` (threads of this client, PyFlink's local default) or
    ``"process"``; ``None`` for a job that does not run locally (PyFlink's own tests)."""
    from flink_dl.flink.pyflink_adapter import is_local_deployment

    if not is_local_deployment(j_config):
        return None
    return "process" if os.environ.get("_python_worker_execution_mode") == "process" \
        else "loopback"


def runs_in_loopback(j_config: Any) -> bool:
    """Whether the job of ``j_config`` runs its Python workers as threads of this client."""
    return local_python_mode(j_config) == "loopback"


def _loopback_job(j_config: Any) -> bool:
    return RuntimeSettings.from_env().light_launcher and runs_in_loopback(j_config)


def apply(j_config: Any) -> bool:
    """Use the light launcher for this local loopback job's Python workers (see module doc);
    ``j_config`` is the Java ``Configuration`` of the job's environment. Returns whether the
    launcher was set."""
    if not _loopback_job(j_config):
        return False
    current = j_config.getString(PYTHON_EXECUTABLE, None)
    if current not in (None, sys.executable) or not sys.executable:
        return False
    try:
        script = launcher_for(sys.executable)
    except OSError as exc:
        log.info("light Python worker launcher not used: %s", exc)
        return False
    j_config.setString(PYTHON_EXECUTABLE, str(script))
    return True


def apply_to_table_env(t_env: Any) -> bool:
    """:func:`apply` for the environment under a ``TableEnvironment``."""
    from flink_dl.flink.pyflink_adapter import j_env_config_of_table_env

    return apply(j_env_config_of_table_env(t_env))
