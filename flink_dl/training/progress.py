"""``ProgressLine``: one INFO line per training node every few seconds.

A streaming trainer steps and publishes many times a second; logging each step or version
at INFO buries everything else. Instead each node says, at most every
``progress_every_s`` seconds, how far it is: rows read, steps, the newest version it
published, the metrics its entry passed (a loss tensor is read only when the line is due)
and the rows per second since its last line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any


class ProgressLine:
    """Throttled progress lines of one training process."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._started = self._last = time.monotonic()
        self._last_rows = 0

    def due(self) -> bool:
        """Whether the next line is due (cheap: one clock read)."""
        return time.monotonic() - self._last >= self.interval_s

    def log(self, who: str, *, rows: int | None, step: int, version: int | None,
            metrics: Mapping[str, Any]) -> None:
        """Log one line now and restart the interval."""
        now = time.monotonic()
        parts = [f"step {step:,}"]
        if rows is not None:
            rate = (rows - self._last_rows) / max(now - self._last, 1e-9)
            parts.insert(0, f"{rows:,} rows read")
            parts.append(f"{rate:,.0f} rows/s")
            self._last_rows = rows
        if version is not None:
            parts.append(f"version {version}")
        parts += [f"{name} {_shown(value)}" for name, value in metrics.items()]
        self._last = now
        self.logger.info("%s: %s (%.0f s)", who, ", ".join(parts), now - self._started)


def _shown(value: Any) -> str:
    if hasattr(value, "item") and callable(value.item):  # a tensor or numpy scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
