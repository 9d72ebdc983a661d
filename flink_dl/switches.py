"""flink-dl's on/off switches read from environment variables (``FLINK_DL_*``)."""

from __future__ import annotations

import os


def switched_on(name: str) -> bool:
    """Whether the environment variable ``name`` turns a flink-dl option on (``1``, ``on``,
    ``true`` or ``yes``; unset means off)."""
    return os.environ.get(name, "").strip().lower() in ("1", "on", "true", "yes")


def switched_off(name: str) -> bool:
    """Whether the environment variable ``name`` turns a flink-dl feature off (``0``,
    ``off``, ``false`` or ``no``; unset means on)."""
    return os.environ.get(name, "").strip().lower() in ("0", "off", "false", "no")
