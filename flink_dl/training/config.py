"""``TrainingConfig``: the settings every framework's training job shares.

``TorchConfig`` and ``TFConfig`` extend it with their layout (ranks, ps/chief) and their
framework's options; everything here has one name, one default and one check in both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from flink_dl.cluster.registry import validate_config
from flink_dl.config import (
    ClusterConfig,
    ClusterSettings,
    EntryFn,
    is_count,
    is_seconds,
    validate_entry,
)
from flink_dl.errors import ConfigError
from flink_dl.training.options import DERIVED_FIELDS, TrainingOptions

#: Bytes of each node's shared-memory input ring unless ``channel_capacity`` says otherwise.
DEFAULT_CHANNEL_CAPACITY = 8 * 1024 * 1024
WORKER_ROLE = "worker"


@dataclass(kw_only=True)
class TrainingConfig(ClusterSettings, ABC):
    """Settings shared by ``flink_dl.pytorch.train`` and ``flink_dl.tensorflow.train``.

    The ML cluster's own settings (``timeouts``, ``restart``, ``bind_host``,
    ``advertise_host``, ``rendezvous``, ``rendezvous_dir``, ``name``, ``job_id``,
    ``secret``) come from ``flink_dl.ClusterSettings``, declared and checked there once and
    handed to the job's ``ClusterConfig`` as they are.

    Args:
        entry: the training function, called with the framework's context in each
            training process; a callable or ``"module:function"``.
        epochs: passes over a bounded input (the first is read from Flink, the rest replay
            each node's cached share). Unbounded input has one endless epoch.
        properties: string properties the entry sees as ``ctx.properties``.
        model_dir: where ``ctx.save_model`` publishes versions (``ModelStore``) and
            checkpoints go, under ``checkpoints/<job_id>/`` (shared by every host).
        init_from: warm start: a published version directory, or a model directory whose
            newest version (resolved when the job is built) ``ctx.warm_start(model)``
            loads; ``None``: train from scratch.
        features / label: the input columns the model reads, checked at build time (every
            numeric Flink type is a feature, see ``flink_dl.channel.features``) and the
            defaults of ``ctx.dataloader``/``ctx.dataset``.
        allow_empty_input: a bounded input without rows is an ``EmptyInputError`` when the
            model is saved; ``True`` logs a warning and publishes nothing instead.
        exactly_once: stream training in which every input row reaches exactly one rank's
            optimizer step exactly once across failures and restarts (PyTorch): rows are
            kept in Flink state until a checkpoint (``ctx.save_checkpoint`` on every rank)
            covers them, and ``ctx.resume`` picks up after the newest one. Needs Flink
            checkpointing, a checkpointed source, ``model_dir`` and ``epochs=1``.
        export_every_steps / export_every_s: when ``ctx.maybe_save_model`` publishes.
        progress_every_s: each node logs one progress line (rows, steps, version, loss,
            rate) at INFO at most this often (``ctx.log_progress``; ``maybe_save_model``
            calls it too); the per-version lines are DEBUG. ``None``: no progress lines.
        keep_versions: keep only this many newest model versions (``None``: all).
        keep_checkpoints: keep only this many newest checkpoints of the job.
        env: environment variables of the training processes.
        channel_capacity: bytes of each node's shared-memory input ring.
        input_bundle_ms: in a streaming job, the longest an input row waits in Flink's
            Python bundle before it is sent to its node (ms); ``None``: Flink's bundle
            time (1 s by default), best for throughput. Online learners set 50.
        collective_timeout_s: bound of the framework's collectives.
        timeouts / restart / bind_host / advertise_host / rendezvous / rendezvous_dir /
            name / job_id / secret: the ``ClusterSettings`` (``timeouts.rendezvous`` also
            bounds the framework's own rendezvous; a failed or killed node, AM or
            TaskManager restarts every node under a new attempt, ``ctx.attempt``).
    """

    #: The framework's name, in the manifests of published versions.
    framework: ClassVar[str] = ""

    entry: EntryFn | str
    epochs: int = 1
    properties: Mapping[str, str] = field(default_factory=dict)
    model_dir: str | None = None
    init_from: str | None = None
    features: Sequence[str] | None = None
    label: str | None = None
    allow_empty_input: bool = False
    exactly_once: bool = False
    export_every_steps: int | None = None
    export_every_s: float | None = None
    progress_every_s: float | None = 5.0
    keep_versions: int | None = None
    keep_checkpoints: int = 3
    env: Mapping[str, str] = field(default_factory=dict)
    channel_capacity: int = DEFAULT_CHANNEL_CAPACITY
    input_bundle_ms: int | None = None
    collective_timeout_s: float = 1800.0
    #: ``ClusterSettings.name`` with the training jobs' default.
    name: str = "training"

    # ------------------------------------------------------------ the layout (per plugin)
    @property
    @abstractmethod
    def roles(self) -> dict[str, int]:
        """Role -> node count of the training cluster."""

    @property
    def daemon_roles(self) -> frozenset[str]:
        """Roles that run until the AM stops them (none by default)."""
        return frozenset()

    #: The cluster rules (state machine) of the job: a registered name or "module:attr".
    plugin: ClassVar[str] = "default"
    #: Whether the framework's context implements exactly-once training.
    supports_exactly_once: ClassVar[bool] = False
    #: What the plugin's training processes get of the config (``ctx.options``).
    options_class: ClassVar[type[TrainingOptions]] = TrainingOptions
    #: Modules a rank process imports before its node starts, on the embedded
    #: mini-cluster (``flink_dl.cluster.prewarm``); empty: no prewarming.
    prewarm_modules: ClassVar[tuple[str, ...]] = ()

    def node_env(self) -> dict[str, str]:
        """Environment of the node processes (the framework's defaults under ``env``)."""
        return dict(self.env)

    def validate_layout(self) -> None:
        """Check the framework's own fields (``ConfigError`` naming the key)."""

    # ------------------------------------------------------------ shared checks
    @property
    def config_name(self) -> str:
        return type(self).__name__

    def validate(self) -> None:
        """Check every field, the cluster settings too; raise ``ConfigError`` naming the
        key at fault."""
        self.validate_fields()
        validate_config(self.cluster_config(self.entry))

    def validate_fields(self) -> None:
        """Check the training fields (``build`` calls this; the cluster settings are
        checked once, by the ``ClusterConfig`` of the job, when its cluster is added)."""
        self.validate_layout()
        if not is_count(self.epochs) or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        validate_entry(self.entry, "entry")
        for key in ("export_every_steps", "keep_versions"):
            value = getattr(self, key)
            if value is not None and (not is_count(value) or value < 1):
                raise ConfigError(f"{key} must be an integer >= 1 or None, got {value!r}")
        if not is_count(self.keep_checkpoints) or self.keep_checkpoints < 1:
            raise ConfigError(f"keep_checkpoints must be an integer >= 1, got "
                              f"{self.keep_checkpoints!r}")
        for key in ("export_every_s", "progress_every_s"):
            value = getattr(self, key)
            if value is not None and not is_seconds(value):
                raise ConfigError(f"{key} must be a positive number of seconds or None, "
                                  f"got {value!r}")
        if not is_seconds(self.collective_timeout_s):
            raise ConfigError(f"collective_timeout_s must be a positive number of seconds, "
                              f"got {self.collective_timeout_s!r}")
        if self.model_dir is not None and not isinstance(self.model_dir, str | Path):
            raise ConfigError(f"model_dir must be a string path, got {self.model_dir!r}")
        if self.init_from is not None and not isinstance(self.init_from, str | Path):
            raise ConfigError(f"init_from must be a path to a model version or model "
                              f"directory, got {self.init_from!r}")
        if self.features is not None and (
                isinstance(self.features, str) or not self.features
                or not all(isinstance(f, str) for f in self.features)):
            raise ConfigError(f"features must be a non-empty list of column names, got "
                              f"{self.features!r}")
        if self.label is not None and not isinstance(self.label, str):
            raise ConfigError(f"label must be a column name, got {self.label!r}")
        if not isinstance(self.allow_empty_input, bool):
            raise ConfigError(f"allow_empty_input must be True or False, got "
                              f"{self.allow_empty_input!r}")
        self._validate_exactly_once()
        if not is_count(self.channel_capacity) or self.channel_capacity < 64 * 1024 \
                or self.channel_capacity % 8:
            raise ConfigError(f"channel_capacity must be a multiple of 8 >= 65536 bytes, got "
                              f"{self.channel_capacity!r}")
        if self.input_bundle_ms is not None and (not is_count(self.input_bundle_ms)
                                                 or self.input_bundle_ms < 1):
            raise ConfigError(f"input_bundle_ms must be an integer >= 1 (milliseconds) or "
                              f"None, got {self.input_bundle_ms!r}")

    def _validate_exactly_once(self) -> None:
        if not isinstance(self.exactly_once, bool):
            raise ConfigError(f"exactly_once must be True or False, got {self.exactly_once!r}")
        if not self.exactly_once:
            return
        where = f"{self.config_name}(exactly_once=True)"
        if not self.supports_exactly_once:
            raise ConfigError(f"{where}: the {self.framework or type(self).__module__} "
                              "plugin does not implement exactly-once training (its config "
                              "class sets supports_exactly_once = False)")
        if self.epochs != 1:
            raise ConfigError(f"{where}: epochs must be 1 (stream training), got "
                              f"{self.epochs!r}")
        if self.model_dir is None:
            raise ConfigError(f"{where}: set model_dir (the checkpoints and the ranks' input "
                              "positions live under it, on storage every host shares)")

    # ------------------------------------------------------------ the ML cluster
    def cluster_config(self, entry: EntryFn | str) -> ClusterConfig:
        """The ML cluster config of this training job, running ``entry`` on every node.

        The ``ClusterSettings`` both configs are (timeouts, restart, placement, name,
        job_id, secret) pass through as they are; the layout and the environment come from the
        plugin (``roles``, ``daemon_roles``, ``plugin``, ``node_env``)."""
        checkpoint_dir = (str(Path(self.model_dir) / "checkpoints")
                          if self.exactly_once and self.model_dir is not None else None)
        return ClusterConfig(
            **self.cluster_settings(), roles=self.roles, entry=entry,
            properties=dict(self.properties), env=self.node_env(),
            daemon_roles=self.daemon_roles, plugin=self.plugin, checkpoint_dir=checkpoint_dir)

    def training_options(self, input_schema: pa.Schema | None, *, init_from: str | None = None,
                         events: bool = True) -> TrainingOptions:
        """What the training processes need of this (validated) config: its plugin's
        ``options_class``, each field copied from the config field of the same name
        (a few derived: ``DERIVED_FIELDS``); ``init_from``: the version it resolved to."""
        cls = self.options_class
        copied = {f.name: getattr(self, f.name) for f in fields(cls)
                  if f.name not in DERIVED_FIELDS}
        return cls(
            **copied,
            model_dir=str(self.model_dir) if self.model_dir is not None else None,
            timeouts=self.timeout, init_from=init_from,
            features=tuple(self.features) if self.features is not None else None,
            input_schema=input_schema.serialize().to_pybytes()
            if input_schema is not None else None,
            events=events)
