"""The client's environment without what PyFlink's loopback workers left in it.

A local loopback job runs its Python workers inside the client, and PyFlink's loopback pool
copies the worker's parameters into the client's ``os.environ``. A process started from
the client afterwards inherits them: a fresh interpreter refuses to start its own JVM
(``PYFLINK_GATEWAY_DISABLED``), and a TaskManager would run its Python operators as threads
of the client (``PYTHON_LOOPBACK_SERVER_ADDRESS``). Start such processes with
:func:`without_loopback_leftovers`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The variables PyFlink's loopback pool sets in the client (PyFlink 2.3).
LOOPBACK_LEFTOVERS = (
    "PYTHON_LOOPBACK_SERVER_ADDRESS", "PYFLINK_GATEWAY_DISABLED", "_PYFLINK_CONN_INFO_PATH",
    "_PYTHON_WORKER_MEMORY_LIMIT", "BOOT_LOG_DIR", "SEMI_PERSISTENT_DIRECTORY", "python",
    "FLINK_LIB_DIR", "FLINK_PLUGINS_DIR", "FLINK_OPT_DIR", "FLINK_BIN_DIR",
)


def without_loopback_leftovers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) without :data:`LOOPBACK_LEFTOVERS`."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k not in LOOPBACK_LEFTOVERS}

