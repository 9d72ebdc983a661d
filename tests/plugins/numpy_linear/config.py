"""``LinearConfig``: the numpy plugin's job (``TrainingConfig`` + workers, ridge)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flink_dl.errors import ConfigError
from flink_dl.training import WORKER_ROLE, TrainingConfig, TrainingOptions

#: The file of a published version: the weights, the intercept last (``np.save``).
WEIGHTS_FILE = "weights.npy"


@dataclass(frozen=True, kw_only=True)
class LinearOptions(TrainingOptions):
    """The plugin's extra setting, copied from ``LinearConfig.ridge`` by name."""

    ridge: float = 0.0


@dataclass(kw_only=True)
class LinearConfig(TrainingConfig):
    """Args: ``workers`` (nodes sharing the input), ``ridge`` (L2 penalty, 0: none)."""

    framework = "numpy-linear"
    options_class = LinearOptions

    workers: int
    ridge: float = 0.0
    name: str = field(default="numpy-linear")

    @property
    def roles(self) -> dict[str, int]:
        return {WORKER_ROLE: self.workers}

    def validate_layout(self) -> None:
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) \
                or self.workers < 1:
            raise ConfigError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not isinstance(self.ridge, int | float) or self.ridge < 0:
            raise ConfigError(f"ridge must be a number >= 0, got {self.ridge!r}")
