"""Logging set-up for scripts and the CLI (the library itself only creates loggers)."""

from __future__ import annotations

import logging

#: Libraries that log a lot at INFO while a PyFlink job runs.
NOISY = ("py4j", "apache_beam", "pyflink")


def configure_logging(level: int = logging.INFO) -> None:
    """Timestamped log lines on stderr; PyFlink's, Beam's and py4j's only from WARNING."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
