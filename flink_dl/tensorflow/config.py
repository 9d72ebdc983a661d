"""``TFConfig``: a TensorFlow job's settings, turned into an ML cluster config."""

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
PS_ROLE = "ps"
CHIEF_ROLE = "chief"
#: The cluster rules (AM state machine) of TensorFlow jobs: ``flink_dl.tensorflow.rules``.
RULES = "tensorflow"
#: Files of a published TensorFlow model version.
SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
KERAS_BACKUP_DIR = "checkpoints/keras-backup"
#: Environment of every TensorFlow node process unless ``TFConfig.env`` overrides it:
#: ``tf.keras`` is Keras 2 (``tf_keras``), the Keras that ``tf.distribute`` strategies
#: support; Keras 3 cannot ``fit`` under MultiWorkerMirroredStrategy (see docs).
DEFAULT_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}


@dataclass
class TFConfig:
    """Settings of ``flink_dl.tensorflow.train``.

    Layouts:
        * ``workers=N`` (``ps=0``): every worker runs the entry with the same program;
          ``ctx.strategy()`` is a ``MultiWorkerMirroredStrategy`` (synchronous all-reduce);
          worker 0 is the chief.
        * ``workers=N, ps=M`` (optionally ``chief=1``): variables live on the ``ps`` nodes
          (TensorFlow gRPC servers the plugin runs; they take no input and are stopped
          when the workers are done). Workers train between-graph
          (``ctx.device_setter()``, ``ctx.session()``). With ``chief=1`` a separate chief
          node (no input) initialises and exports; it is asked to stop when the workers
          are done, before the ps nodes are. Without it, worker 0 is the chief.

    Args:
        workers: worker nodes, one Flink subtask and one process each; they share the input.
        entry: the training function, called with a ``TFContext`` in every worker's (and
            the chief's) process after ``TF_CONFIG`` is set; a callable or
            ``"module:function"``.
        ps: parameter-server nodes (0 for MultiWorkerMirroredStrategy).
        chief: 1 for a separate chief node (needs ``ps >= 1``), else 0.
        epochs: passes over a bounded input (the first from Flink, the rest replay the
            worker's cached share). Unbounded input has one endless epoch.
        properties: string properties the entry sees as ``ctx.properties``.
        model_dir: where ``ctx.save_model`` publishes versions (``ModelStore``) and
            checkpoints go (shared by every host on a multi-host cluster).
        export_every_steps / export_every_s: when ``ctx.maybe_save_model`` publishes.
        keep_versions: keep only this many newest versions (``None``: all).
        env: environment variables of the node processes (over ``DEFAULT_ENV``).
        timeouts: cluster ``Timeouts``.
        channel_capacity: bytes of each worker's shared-memory input ring.
        streaming: the input is unbounded (one endless epoch): ``ctx.dataset`` then does not
            read a whole epoch first to agree on equal step counts across workers.
        collective_timeout_s: bound of MultiWorkerMirroredStrategy's collectives.
        name: prefix of the Flink operator names.
        restart: ``RestartPolicy`` (or mapping / int of attempts): a failed or killed node,
            AM or TaskManager restarts the whole TensorFlow cluster under a new attempt
            (``ctx.attempt``); the chief restores from its checkpoints.
    """

    workers: int
    entry: EntryFn | str
    ps: int = 0
    chief: int = 0
    epochs: int = 1
    properties: Mapping[str, str] = field(default_factory=dict)
    model_dir: str | None = None
    export_every_steps: int | None = None
    export_every_s: float | None = None
    keep_versions: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeouts: Timeouts | Mapping[str, float] | None = None
    channel_capacity: int = 8 * 1024 * 1024
    streaming: bool = False
    collective_timeout_s: float = 1800.0
    name: str = "tf"
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    restart: RestartPolicy | Mapping[str, object] | int | None = None

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the key at fault."""
        if not is_count(self.workers) or self.workers < 1:
            raise ConfigError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not is_count(self.ps) or self.ps < 0:
            raise ConfigError(f"ps must be an integer >= 0, got {self.ps!r}")
        if self.chief not in (0, 1) or isinstance(self.chief, bool):
            raise ConfigError(f"chief must be 0 or 1, got {self.chief!r}")
        if self.chief and not self.ps:
            raise ConfigError(
                "chief=1 needs ps >= 1: under MultiWorkerMirroredStrategy (ps=0) every "
                "replica trains on a share of the input, so worker 0 acts as the chief")
        validate_training_settings(self)
        if not isinstance(self.streaming, bool):
            raise ConfigError(f"streaming must be True or False, got {self.streaming!r}")
        if self.streaming and self.epochs != 1:
            raise ConfigError(f"epochs must be 1 with streaming=True, got {self.epochs!r}")

    @property
    def roles(self) -> dict[str, int]:
        """Role -> node count, in TF_CONFIG order (chief, worker, ps)."""
        roles = {CHIEF_ROLE: self.chief, WORKER_ROLE: self.workers, PS_ROLE: self.ps}
        return {role: count for role, count in roles.items() if count}

    def cluster_config(self, entry: EntryFn) -> ClusterConfig:
        """The ML cluster config: the roles, with ``chief`` and ``ps`` as daemon roles."""
        return ClusterConfig(
            roles=self.roles, entry=entry, properties=self.properties,
            env={**DEFAULT_ENV, **dict(self.env)}, timeouts=self.timeouts,
            daemon_roles=frozenset(self.roles) & {CHIEF_ROLE, PS_ROLE}, plugin=RULES,
            name=self.name, job_id=self.job_id, secret=self.secret, restart=self.restart)
