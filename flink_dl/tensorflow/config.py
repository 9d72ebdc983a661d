"""``TFConfig``: a TensorFlow job's settings (``TrainingConfig`` + the TF cluster layout)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flink_dl.config import is_count
from flink_dl.errors import ConfigError
from flink_dl.training.config import WORKER_ROLE, TrainingConfig
from flink_dl.training.options import TrainingOptions

__all__ = ["CHIEF_ROLE", "DEFAULT_ENV", "KERAS_FILE", "PS_ROLE", "RULES", "SAVED_MODEL_DIR",
           "WORKER_ROLE", "TFConfig", "TFOptions"]

PS_ROLE = "ps"
CHIEF_ROLE = "chief"
#: The cluster rules (AM state machine) of TensorFlow jobs: ``flink_dl.tensorflow.rules``.
RULES = "flink_dl.tensorflow.rules:TensorFlowRules"
#: Files of a published TensorFlow model version.
SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"
#: Keras ``BackupAndRestore`` directory inside the job's checkpoints (``ctx.checkpoints``).
KERAS_BACKUP = "keras-backup"
#: Environment of every TensorFlow node process unless ``TFConfig.env`` overrides it:
#: ``tf.keras`` is Keras 2 (``tf_keras``), the Keras that ``tf.distribute`` strategies
#: support; Keras 3 cannot ``fit`` under MultiWorkerMirroredStrategy (see docs).
DEFAULT_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}


@dataclass(frozen=True, kw_only=True)
class TFOptions(TrainingOptions):
    """A TensorFlow node's ``TrainingOptions``, plus the config's ``streaming``."""

    streaming: bool = False


@dataclass(kw_only=True)
class TFConfig(TrainingConfig):
    """Settings of ``flink_dl.tensorflow.train``: the shared ``TrainingConfig`` fields
    (entry, epochs, model_dir, init_from, features/label, export clock, timeouts, restart,
    placement, ...) plus the layout.

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
        ps: parameter-server nodes (0 for MultiWorkerMirroredStrategy).
        chief: 1 for a separate chief node (needs ``ps >= 1``), else 0.
        streaming: the input is unbounded (one endless epoch): ``ctx.dataset`` then does not
            read a whole epoch first to agree on equal step counts across workers.

    ``env`` goes over ``DEFAULT_ENV``; the entry gets a ``TFContext`` once ``TF_CONFIG`` is
    set.
    """

    framework = "tensorflow"
    plugin = RULES
    options_class = TFOptions

    workers: int
    ps: int = 0
    chief: int = 0
    streaming: bool = False
    name: str = field(default="tf")

    @property
    def roles(self) -> dict[str, int]:
        """Role -> node count, in TF_CONFIG order (chief, worker, ps)."""
        roles = {CHIEF_ROLE: self.chief, WORKER_ROLE: self.workers, PS_ROLE: self.ps}
        return {role: count for role, count in roles.items() if count}

    @property
    def daemon_roles(self) -> frozenset[str]:
        """``chief`` and ``ps`` run until the AM stops them."""
        return frozenset(self.roles) & {CHIEF_ROLE, PS_ROLE}

    def node_env(self) -> dict[str, str]:
        return {**DEFAULT_ENV, **dict(self.env)}

    def validate_layout(self) -> None:
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
        if not isinstance(self.streaming, bool):
            raise ConfigError(f"streaming must be True or False, got {self.streaming!r}")
        if self.streaming and self.epochs != 1:
            raise ConfigError(f"epochs must be 1 with streaming=True, got {self.epochs!r}")
