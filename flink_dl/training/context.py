"""``TrainingContext``: what both frameworks' training contexts share.

``TorchContext`` and ``TFContext`` extend it with their framework's process group or
strategy, data loader and model format. Everything here has one name, one behaviour and
one error type in both: the node's identity and properties, epochs, progress
(``report``, ``heartbeat``), stop requests, ``write``, the model store and its export
clock (``save_model``/``maybe_save_model``), job-scoped checkpoints, warm starts
(``init_from``) and the empty-input rule.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from flink_dl.channel.features import check_feature_columns
from flink_dl.cluster.context import NodeContext
from flink_dl.config import is_count
from flink_dl.errors import ConfigError, EmptyInputError, MissingColumnError
from flink_dl.models.events import event_columns
from flink_dl.models.store import ModelStore, ModelVersion, store_for
from flink_dl.training.checkpoints import CheckpointDir
from flink_dl.training.options import TrainingOptions
from flink_dl.training.progress import ProgressLine


class TrainingContext(ABC):
    """Handed to the training entry in each training process (see the subclasses).

    A plugin implements ``write_model`` and ``load_weights``, and may refine
    ``write_elsewhere``, ``agree_on_clock`` and ``input_is_empty`` (the hooks below).

    Attributes:
        options: the job's ``TrainingOptions`` (the plugin's subclass of it).
        node: the underlying ``NodeContext``.
        properties: the job's string properties.
        job_id: this run's id; ``attempt``: 0, then +1 after each restart (failover).
        rank: a number unique to this process among the training nodes (0 is the chief).
    """

    #: The framework's name (manifests of published versions, logger name).
    framework: ClassVar[str] = ""
    #: The config class's name, for messages.
    config_name: ClassVar[str] = "TrainingConfig"

    rank: int = 0

    def __init__(self, node: NodeContext, options: TrainingOptions) -> None:
        self.node = node
        self.options = options
        self.properties = node.properties
        self.job_id = node.job_id
        self.attempt = node.attempt
        self.log = logging.getLogger(f"flink_dl.{self.framework or 'training'}")
        self._store: ModelStore | None = None
        self._init_version: ModelVersion | None = None
        self._last_export = time.monotonic()
        self._last_export_step: int | None = None
        self._warned_empty = False
        self._last_version: int | None = None
        self._routine_export = False  # maybe_save_model's versions log at DEBUG
        every = options.progress_every_s
        self._progress = None if every is None else ProgressLine(self.log, every)
        if self.has_input:
            self.node.node_input().epochs_setting = f"{self.config_name}.epochs"

    # ------------------------------------------------------------------ identity
    @property
    def is_chief(self) -> bool:
        """The node that publishes models and writes checkpoints."""
        return self.rank == 0

    @property
    def who(self) -> str:
        """How logs name this process."""
        return f"rank {self.rank}"

    # ------------------------------------------------------------------ data
    @property
    def has_input(self) -> bool:
        """Whether this node is fed the job's input."""
        return (self.node.channels or {}).get("input") is not None

    @property
    def epochs(self) -> int:
        """Passes over the input in all (``epochs`` of the config)."""
        return self.node.epochs_total

    @property
    def epoch(self) -> int:
        """The input epoch being read (0-based); 0 for a node without input."""
        return self.node.epoch

    @property
    def features(self) -> list[str] | None:
        """The config's ``features`` (the loader's default columns), or ``None``."""
        features = self.options.features
        return list(features) if features is not None else None

    @property
    def label(self) -> str | None:
        """The config's ``label`` column, or ``None``."""
        return self.options.label

    @property
    def input_schema(self) -> pa.Schema | None:
        """The Arrow schema of the input, as known when the job was built."""
        return self.options.schema

    def _feature_columns(self, where: str, features: Sequence[str] | None, label: str | None,
                         columns: Sequence[str] | None) -> tuple[list[str] | None, str | None]:
        """The loader's features and label (the config's by default), checked against the
        input's schema: ``MissingColumnError``/``FeatureTypeError`` name the column."""
        if features is None and columns is None:
            features = self.options.features
            label = label if label is not None else self.options.label
        if isinstance(features, str):
            raise ConfigError(f"{where}: features must be a list of column names, got "
                              f"{features!r}")
        schema = self.input_schema
        if schema is not None:
            if features is not None or label is not None:
                check_feature_columns(schema, features, label, where=where)
            missing = [c for c in columns or [] if c not in schema.names]
            if missing:
                raise MissingColumnError(f"{where}: column(s) {missing} are not in the "
                                         f"input; it has {schema.names}")
        return (list(features) if features is not None else None), label

    @staticmethod
    def _check_batch_size(where: str, batch_size: object) -> None:
        if not is_count(batch_size) or batch_size < 1:  # type: ignore[operator]
            raise ConfigError(f"{where}: batch_size must be an integer >= 1, got "
                              f"{batch_size!r}")

    def input_stats(self) -> dict[str, int]:
        """The input channel's fill level and the rows read so far."""
        return self.node.input_stats()

    # ------------------------------------------------------------------ control
    @property
    def stop_requested(self) -> bool:
        """True once the AM asked this node to stop (e.g. a chief: the workers are done)."""
        return self.node.stop_requested

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Block until the AM asks this node to stop (True) or ``timeout`` passes."""
        return self.node.wait_for_stop(timeout)

    def heartbeat(self) -> None:
        """Tell the node runner the entry makes progress (``timeouts.progress``); reading
        input, writing output and ``report`` count too."""
        self.node.heartbeat()

    def write(self, rows: Any) -> None:
        """Send rows out of the node (the role's output schema)."""
        self.node.write(rows)

    def report(self, *, step: int = 0, epoch: int | None = None, **metrics: Any) -> None:
        """Log progress (chief, or every node at DEBUG) and send it out of the job as a
        ``"metrics"`` event."""
        epoch = self.epoch if epoch is None else epoch
        text = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in metrics.items())
        self.log.log(logging.INFO if self.is_chief else logging.DEBUG,
                     "%s epoch %d step %d %s", self.who, epoch, step, text)
        self._emit("metrics", epoch=epoch, step=step, metrics=metrics)
        self.heartbeat()

    def log_progress(self, *, step: int, **metrics: Any) -> None:
        """Log one progress line at INFO at most every ``progress_every_s`` seconds: rows
        read, ``step``, the newest version published, ``metrics`` (e.g. ``loss=loss``; a
        tensor is read only when a line is due) and rows/s. Cheap enough for every step;
        ``maybe_save_model`` calls it too."""
        if self._progress is None or not self._progress.due():
            return
        rows = self.node.node_input().rows_read if self.has_input else None
        self._progress.log(self.who, rows=rows, step=step, version=self._last_version,
                           metrics=metrics)

    def _emit(self, kind: str, *, epoch: int, step: int, version: int | None = None,
              path: str | None = None, metrics: dict[str, Any] | None = None) -> None:
        if self.options.events:
            self.node.write(event_columns(kind, rank=self.rank, epoch=epoch, step=step,
                                          version=version, path=path, metrics=metrics,
                                          attempt=self.attempt))

    # ------------------------------------------------------------------ models
    @property
    def model_store(self) -> ModelStore:
        """The version store in ``model_dir`` (``ConfigError`` naming it when unset)."""
        if self._store is None:
            self._store = store_for(self.options.model_dir, self.options.keep_versions,
                                    self.config_name)
        return self._store

    def save_model(self, model: Any, *, step: int = 0, epoch: int | None = None,
                   metrics: dict[str, Any] | None = None,
                   **write_options: Any) -> ModelVersion | None:
        """Publish ``model`` as the next version in ``model_dir`` (the chief writes it; the
        version also leaves the job as a ``"model"`` event). Returns the version on the
        chief, else ``None``. A bounded input without rows raises ``EmptyInputError``
        (``allow_empty_input=True``: a warning, nothing published)."""
        epoch = self.epoch if epoch is None else epoch
        self._last_export = time.monotonic()  # on every node: they decide alike
        self._last_export_step = step
        if self._skip_empty():
            return None
        if not self.is_chief:
            self.write_elsewhere(model, **write_options)
            return None
        version = self.model_store.publish(
            lambda directory: self.write_model(model, directory, **write_options),
            step=step, epoch=epoch, framework=self.framework, metrics=metrics)
        self._last_version = version.version
        self.log.log(logging.DEBUG if self._routine_export else logging.INFO,
                     "%s: published model version %d (step %d, epoch %d)", self.who,
                     version.version, step, epoch)
        self._emit("model", epoch=epoch, step=step, version=version.version,
                   path=version.path, metrics=metrics)
        return version

    def maybe_save_model(self, model: Any, *, step: int, metrics: dict[str, Any] | None = None,
                         now: bool = False, **write_options: Any) -> ModelVersion | None:
        """Publish a version when ``export_every_steps`` steps or ``export_every_s`` seconds
        passed since the last one (streaming training calls this every step), or ``now``
        (e.g. the entry has caught up with its input: ``loader.caught_up()``) when this
        step is not published yet."""
        every_steps = self.options.export_every_steps
        every_s = self.options.export_every_s
        if every_steps is None and every_s is None:
            raise ConfigError(f"maybe_save_model needs {self.config_name}("
                              "export_every_steps=...) or export_every_s")
        self.log_progress(step=step, **(metrics or {}))
        if step == self._last_export_step:
            return None
        due = every_steps is not None and step - (self._last_export_step or 0) >= every_steps
        if (every_s is not None or now) and not due:
            late = every_s is not None and time.monotonic() - self._last_export >= every_s
            due = self.agree_on_clock(late or now, step)
        if not due:
            return None
        self._routine_export = True
        try:
            return self.save_model(model, step=step, metrics=metrics, **write_options)
        finally:
            self._routine_export = False

    @property
    def last_export_step(self) -> int | None:
        """The ``step`` of the last ``save_model`` (on every node alike: they decide
        together), or ``None`` before the first."""
        return self._last_export_step

    # ------------------------------------------------------------------ plugin hooks
    @abstractmethod
    def write_model(self, model: Any, directory: Path, **write_options: Any) -> None:
        """Write ``model`` into a new version's ``directory`` (on the chief; the store
        publishes the directory atomically afterwards)."""

    @abstractmethod
    def load_weights(self, model: Any, version: ModelVersion) -> None:
        """Load a published ``version``'s weights into ``model`` (``warm_start``)."""

    def write_elsewhere(self, model: Any, **write_options: Any) -> None:  # noqa: B027
        """What a node that is not the chief does when ``save_model`` is called (nothing by
        default; frameworks whose saving runs collectives take part here)."""

    def agree_on_clock(self, late: bool, step: int) -> bool:
        """Whether the export clock says "due" (frameworks whose saving runs collectives
        make every node agree)."""
        return late

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoints(self) -> CheckpointDir:
        """This job's checkpoints: ``model_dir/checkpoints/<job_id>/`` (newest
        ``keep_checkpoints`` kept)."""
        return CheckpointDir(self.model_store.root, self.job_id, self.options.keep_checkpoints)

    # ------------------------------------------------------------------ warm start
    @property
    def init_version(self) -> ModelVersion | None:
        """The model version ``init_from`` resolved to when the job was built, or ``None``."""
        path = self.options.init_from
        if path is None:
            return None
        if self._init_version is None:
            self._init_version = ModelStore(Path(path).parent).open(int(Path(path).name[1:]))
        return self._init_version

    def warm_start(self, model: Any) -> ModelVersion | None:
        """Load the ``init_from`` version's weights into ``model`` (every node, before
        training); returns that version, or ``None`` when the job has no ``init_from``."""
        version = self.init_version
        if version is None:
            return None
        self.load_weights(model, version)
        self.log.info("%s: warm start from model version %d (%s)", self.who, version.version,
                      version.path)
        return version

    # ------------------------------------------------------------------ empty input
    def input_is_empty(self) -> bool | None:
        """True when the job's bounded input had no rows at all, False when it had some,
        ``None`` when this node cannot tell (frameworks refine it)."""
        rows = self._own_first_pass_rows()
        if rows is None:
            return None
        if rows > 0:
            return False
        return True if self._training_nodes() == 1 else None

    def _own_first_pass_rows(self) -> int | None:
        if not self.has_input:
            return None
        return self.node.node_input().first_pass_rows

    def _training_nodes(self) -> int:
        return len(self.node.cluster_spec.get("worker", []))

    def _skip_empty(self) -> bool:
        """Raise ``EmptyInputError`` (or warn and return True) on an empty input."""
        if not self.input_is_empty():
            return False
        message = ("the training input had no rows (every node's share of the bounded input "
                   "was empty): nothing was trained, so no model version is published")
        if not self.options.allow_empty_input:
            raise EmptyInputError(f"{message}. Check the source and its filters, or pass "
                                  f"{self.config_name}(allow_empty_input=True) to publish "
                                  "nothing and finish")
        if not self._warned_empty:
            self.log.warning("%s: %s (allow_empty_input=True)", self.who, message)
            self._warned_empty = True
        return True
