"""Logging set-up for scripts and the CLI (the library itself only creates loggers), and
``EveryFewSeconds``, the throttle of routine events in long streaming jobs."""

from __future__ import annotations

import logging
import time

#: Libraries that log a lot at INFO while a PyFlink job runs.
NOISY = ("py4j", "apache_beam", "pyflink")


def configure_logging(level: int = logging.INFO) -> None:
    """Timestamped log lines on stderr; PyFlink's, Beam's and py4j's only from WARNING."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


class EveryFewSeconds:
    """Log a repeating routine event (a version swapped in, a version published) at INFO at
    most once per ``interval_s``, and every occurrence at DEBUG: a long streaming job
    keeps a readable log, and ``DEBUG`` still shows each event."""

    def __init__(self, logger: logging.Logger, interval_s: float = 30.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: float | None = None
        self._since = 0

    def log(self, message: str, *args: object) -> None:
        """Log ``message % args``: at INFO when the interval has passed (with the number of
        the same events since the last INFO line), else at DEBUG."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            self._since += 1
            self.logger.debug(message, *args)
            return
        if self._since:
            message += f" ({self._since} more since the last such line)"
        self._last, self._since = now, 0
        self.logger.info(message, *args)
