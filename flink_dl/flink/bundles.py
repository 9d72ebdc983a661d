"""Python operators' bundle time, set for the operators translated in a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_BUNDLE_TIME = "python.fn-execution.bundle.time"


@contextlib.contextmanager
def python_bundles_of(t_env: Any, bundle_ms: int) -> Iterator[None]:
    """Python operators translated inside this block (a Table turned into a DataStream)
    end their bundles after at most ``bundle_ms`` in a streaming job (each takes the
    bundle settings in force at its translation); the job's setting is restored after.
    A job already at ``bundle_ms`` or less, or in batch mode, is left as it is."""
    config = t_env.get_config()
    before = config.get(_BUNDLE_TIME, "")
    if config.get("execution.runtime-mode", "streaming").strip().lower() == "batch" or (
            before and int(before) <= bundle_ms):
        yield
        return
    config.set(_BUNDLE_TIME, str(bundle_ms))
    try:
        yield
    finally:
        if before:
            config.set(_BUNDLE_TIME, before)
        else:
            config.get_configuration().remove_config(_BUNDLE_TIME)
