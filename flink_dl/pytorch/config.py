"""``TorchConfig``: a PyTorch training job's settings (``TrainingConfig`` + ranks, backend)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flink_dl.config import is_count
from flink_dl.errors import ConfigError
from flink_dl.training.config import WORKER_ROLE, TrainingConfig
from flink_dl.training.options import TrainingOptions

__all__ = ["BACKENDS", "STATE_DICT_FILE", "TORCHSCRIPT_FILE", "WORKER_ROLE", "TorchConfig",
           "TorchOptions"]

BACKENDS = ("auto", "gloo", "nccl")
#: Files of a published PyTorch model version.
STATE_DICT_FILE = "model.pt"
TORCHSCRIPT_FILE = "model.ts"


@dataclass(frozen=True, kw_only=True)
class TorchOptions(TrainingOptions):
    """A PyTorch rank's ``TrainingOptions``, plus the config's ``backend``."""

    backend: str = "auto"


@dataclass(kw_only=True)
class TorchConfig(TrainingConfig):
    """Settings of ``flink_dl.pytorch.train``: the shared ``TrainingConfig`` fields (entry,
    epochs, model_dir, init_from, features/label, export clock, timeouts, restart,
    placement, ...) plus:

    Args:
        world_size: number of worker nodes (ranks), one Flink subtask and one process each.
        backend: ``"gloo"``, ``"nccl"`` or ``"auto"`` (nccl when every rank has a GPU).

    The entry gets a ``TorchContext``; resume after a restart with
    ``ctx.resume(model, optimizer, loader)`` from ``ctx.save_checkpoint``'s files.
    """

    framework = "pytorch"
    supports_exactly_once = True
    options_class = TorchOptions
    prewarm_modules = ("torch", "torch.distributed", "torch._dynamo",
                       "flink_dl.pytorch.context", "flink_dl.pytorch.train")

    world_size: int
    backend: str = "auto"
    name: str = field(default="torch")

    @property
    def roles(self) -> dict[str, int]:
        return {WORKER_ROLE: self.world_size}

    def validate_layout(self) -> None:
        if not is_count(self.world_size) or self.world_size < 1:
            raise ConfigError(f"world_size must be an integer >= 1, got {self.world_size!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
