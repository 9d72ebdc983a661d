"""``PredictOptions``: how a prediction operator serves a model, one typed object.

``flink_dl.pytorch.predict``, ``flink_dl.tensorflow.predict`` and
``flink_dl.pipeline.predict`` take these settings as keyword arguments (or one
``options=PredictOptions(...)``), build the object once and validate it there
(``ConfigError`` naming the option); the operator and the model runner read its
attributes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from flink_dl.errors import ConfigError

if TYPE_CHECKING:
    from pyflink.table import StreamTableEnvironment


@dataclass(frozen=True, kw_only=True)
class PredictOptions:
    """Settings of a prediction operator (see ``flink_dl.inference.operator.predict``).

    Args:
        poll_interval_s: how often a handler that follows a model directory checks for a
            new version (0.2 s: a version is served within a poll and a bundle).
        model_wait_s: how long to wait for a first version to appear in that directory.
        set_batch_size: set the job's Arrow batch and Python bundle for throughput
            (``flink_dl.inference.operator``); the model still runs ``batch_size`` rows
            at a time.
        max_latency_ms: a streaming job's latency budget from a row's arrival to its
            prediction (``flink_dl.inference.latency``; it replaces ``set_batch_size``'s
            settings); ``None``: no budget.
    """

    poll_interval_s: float = 0.1
    model_wait_s: float = 300.0
    set_batch_size: bool = True
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("poll_interval_s", "model_wait_s"):
            if not _positive(getattr(self, name)):
                raise ConfigError(f"{name} must be a positive number of seconds, got "
                                  f"{getattr(self, name)!r}")
        if not isinstance(self.set_batch_size, bool):
            raise ConfigError(f"set_batch_size must be True or False, got "
                              f"{self.set_batch_size!r}")
        if self.max_latency_ms is not None and not _positive(self.max_latency_ms):
            raise ConfigError(f"max_latency_ms must be a positive number of milliseconds, "
                              f"got {self.max_latency_ms!r}")

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names (the keyword arguments ``predict`` routes here)."""
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def parse(cls, where: str, values: Mapping[str, Any],
              options: PredictOptions | None = None) -> PredictOptions:
        """``options`` or the options ``values`` name (not both); ``ConfigError`` naming
        ``where`` and an unknown or bad option."""
        unknown = sorted(set(values) - cls.names())
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {unknown}; predict options are "
                              f"{sorted(cls.names())}")
        if options is not None:
            if values:
                raise ConfigError(f"{where}: pass options=PredictOptions(...) or the options "
                                  f"{sorted(values)} as keywords, not both")
            if not isinstance(options, PredictOptions):
                raise ConfigError(f"{where}: options must be a PredictOptions, got "
                                  f"{type(options).__name__}")
            return options
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def apply_latency_budget(self, t_env: StreamTableEnvironment, model_batch_rows: int
                             ) -> bool:
        """Set the job up for ``max_latency_ms`` (``flink_dl.inference.latency``) with
        model batches of ``model_batch_rows``; False (nothing set) without a budget."""
        if self.max_latency_ms is None:
            return False
        from flink_dl.inference.latency import apply_latency_budget

        apply_latency_budget(t_env, float(self.max_latency_ms), model_batch_rows)
        return True


def _positive(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)
