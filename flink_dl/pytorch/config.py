"""``TorchConfig``: a PyTorch training job's settings, turned into an ML cluster config."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from flink_dl.config import (
    ClusterConfig,
    EntryFn,
    RestartPolicy,
    Timeouts,
    is_count,
    validate_training_settings,
)
from flink_dl.errors import ConfigError

WORKER_ROLE = "worker"
BACKENDS = ("auto", "gloo", "nccl")
#: Files of a published PyTorch model version, and the checkpoints folder of ``model_dir``.
STATE_DICT_FILE = "model.pt"
TORCHSCRIPT_FILE = "model.ts"
CHECKPOINT_DIR = "checkpoints"


@dataclass
class TorchConfig:
    """Settings of ``flink_dl.pytorch.train``.

    Args:
        world_size: number of worker nodes (ranks), one Flink subtask and one process each.
        entry: the training function, called with a ``TorchContext`` in every rank's process
            after the process group is up; a callable or ``"module:function"``.
        epochs: passes over a bounded input (the first is read from Flink, the rest replay
            each rank's cached share). Unbounded input has one endless epoch.
        properties: string properties the entry sees as ``ctx.properties``.
        model_dir: where ``ctx.save_model`` publishes versions and ``ctx.save_checkpoint``
            writes checkpoints (must be shared by every host on a multi-host cluster).
        backend: ``"gloo"``, ``"nccl"`` or ``"auto"`` (nccl when every rank has a GPU).
        export_every_steps / export_every_s: when ``ctx.maybe_save_model`` publishes.
        keep_versions: keep only this many newest model versions (``None``: all).
        env: environment variables of the rank processes.
        timeouts: cluster ``Timeouts`` (``timeouts.rendezvous`` also bounds the process
            group's set-up and ``timeouts.collective`` its collectives).
        channel_capacity: bytes of each rank's shared-memory input ring.
        name: prefix of the Flink operator names.
        restart: ``RestartPolicy`` (or mapping / int of attempts): a failed or killed rank,
            AM or TaskManager restarts every rank under a new attempt; resume with
            ``ctx.resume(model, optimizer, loader)`` from ``ctx.save_checkpoint``'s files.
    """

    world_size: int
    entry: EntryFn | str
    epochs: int = 1
    properties: Mapping[str, str] = field(default_factory=dict)
    model_dir: str | None = None
    backend: str = "auto"
    export_every_steps: int | None = None
    export_every_s: float | None = None
    keep_versions: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts | Mapping[str, float] | None = None
    channel_capacity: int = 8 * 1024 * 1024
    collective_timeout_s: float = 1800.0
    name: str = "torch"
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    restart: RestartPolicy | Mapping[str, object] | int | None = None

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the key at fault."""
        if not is_count(self.world_size) or self.world_size < 1:
            raise ConfigError(f"world_size must be an integer >= 1, got {self.world_size!r}")
        validate_training_settings(self)
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    def cluster_config(self, entry: EntryFn) -> ClusterConfig:
        """The ML cluster config: one ``worker`` role of ``world_size`` nodes."""
        return ClusterConfig(
            roles={WORKER_ROLE: self.world_size}, entry=entry, properties=self.properties,
            env=self.env, timeouts=self.timeouts, name=self.name, job_id=self.job_id,
            secret=self.secret, restart=self.restart)
