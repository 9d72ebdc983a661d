"""``TFContext``: what a TensorFlow entry sees in each worker's (and the chief's) process."""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

from flink_dl.channel.arrays import rechunk
from flink_dl.cluster.context import NodeContext
from flink_dl.errors import ConfigError, EmptyInputError, NotFoundError
from flink_dl.models.store import ModelVersion
from flink_dl.tensorflow.config import KERAS_BACKUP, KERAS_FILE, PS_ROLE, WORKER_ROLE, TFOptions
from flink_dl.tensorflow.data import element_spec, to_element
from flink_dl.tensorflow.export import export_callback, write_model
from flink_dl.tensorflow.sessions import PollingWorkerSessionCreator
from flink_dl.tensorflow.tf_config import is_chief
from flink_dl.training.context import TrainingContext

log = logging.getLogger("flink_dl.tensorflow")

#: Under MultiWorkerMirroredStrategy, ``maybe_save_model`` asks the chief's export clock
#: every this many steps (an all-reduce each time).
_CLOCK_EVERY = 10


class TFContext(TrainingContext):
    """Handed to the entry of every worker (and of the chief) after ``TF_CONFIG`` is set
    (a ``TrainingContext``).

    Attributes:
        task_type / task_index: this node's TensorFlow task (``"worker"``, ``"chief"``).
        tf_config: the ``TF_CONFIG`` dict (also in the environment).
        is_chief: the ``chief`` node, or worker 0 when there is none.
        num_workers: nodes of the ``worker`` role.
    """

    framework = "tensorflow"
    config_name = "TFConfig"

    options: TFOptions

    def __init__(self, node: NodeContext, tf_config: dict[str, Any],
                 options: TFOptions) -> None:
        super().__init__(node, options)
        self.tf_config = tf_config
        self.task_type: str = tf_config["task"]["type"]
        self.task_index: int = tf_config["task"]["index"]
        self.num_workers = len(tf_config["cluster"].get(WORKER_ROLE, []))
        self.rank = self._rank()
        self._is_chief = is_chief(tf_config)
        self._strategy: Any = None
        self._server: Any = None
        #: Rows per worker of the first epoch, once the workers agreed on them.
        self._row_counts: list[int] | None = None

    @property
    def is_chief(self) -> bool:
        """The ``chief`` node, or worker 0 when there is none."""
        return self._is_chief

    @property
    def who(self) -> str:
        return f"{self.task_type} {self.task_index}"

    # ------------------------------------------------------------------ cluster
    @property
    def is_ps_layout(self) -> bool:
        """The cluster has ps nodes (between-graph training), not MultiWorkerMirrored."""
        return PS_ROLE in self.tf_config["cluster"]

    def _rank(self) -> int:
        """A number unique to this node among the chief and the workers (chief first)."""
        if self.task_type == WORKER_ROLE:
            return self.task_index + (1 if "chief" in self.tf_config["cluster"] else 0)
        return 0

    def cluster_spec(self) -> tf.train.ClusterSpec:
        """The TensorFlow cluster (every node's ``host:port`` by task type)."""
        return tf.train.ClusterSpec(self.tf_config["cluster"])

    def strategy(self) -> tf.distribute.MultiWorkerMirroredStrategy:
        """The job's ``MultiWorkerMirroredStrategy`` (workers-only layout), made once.

        Call it before any other TensorFlow work in the entry (TensorFlow's rule).
        """
        if self.is_ps_layout:
            raise ConfigError("strategy(): this job has ps nodes; use ctx.device_setter() and "
                              "ctx.session() (between-graph training), or TFConfig(ps=0)")
        if self._strategy is None:
            options = tf.distribute.experimental.CommunicationOptions(
                timeout_seconds=self.options.collective_timeout_s)
            self._strategy = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=options)
            log.info("%s %d: MultiWorkerMirroredStrategy with %d replicas", self.task_type,
                     self.task_index, self._strategy.num_replicas_in_sync)
        return self._strategy

    def server(self) -> tf.distribute.Server:
        """This node's TensorFlow gRPC server (ps layout), started once on its own port."""
        if self._server is None:
            self._server = tf.distribute.Server(self.cluster_spec(), job_name=self.task_type,
                                                task_index=self.task_index, start=True)
        return self._server

    def device_setter(self) -> Any:
        """Places variables on the ps nodes and ops on this node (``tf.compat.v1.device``).

        Between-graph training is TensorFlow 1 graph code: this switches the process to
        graph mode (``tf.compat.v1.disable_eager_execution``) if it is not already.
        """
        if not self.is_ps_layout:
            raise ConfigError("device_setter(): this job has no ps nodes (TFConfig(ps=...))")
        if tf.executing_eagerly():
            tf.compat.v1.disable_eager_execution()
        return tf.compat.v1.train.replica_device_setter(
            worker_device=f"/job:{self.task_type}/task:{self.task_index}",
            cluster=self.cluster_spec())

    def session_config(self) -> Any:
        """A ``ConfigProto`` that lets this node see only the ps nodes and itself; no
        operation waits longer than ``TFConfig.collective_timeout_s``."""
        return tf.compat.v1.ConfigProto(
            device_filters=[f"/job:{PS_ROLE}", f"/job:{self.task_type}/task:{self.task_index}"],
            operation_timeout_in_ms=int(self.options.collective_timeout_s * 1000))

    def session(self, checkpoint_dir: str | None = None, *, restore: bool = False,
                hooks: Sequence[Any] = (), save_checkpoint_steps: int | None = None,
                save_checkpoint_secs: float | None = None, wait_s: float | None = None,
                poll_s: float = 0.5) -> Any:
        """A ``MonitoredSession`` on this node's server (ps layout).

        The chief initialises the variables on the ps nodes, or restores them from the
        newest checkpoint in ``checkpoint_dir``, and saves checkpoints there every
        ``save_checkpoint_steps``/``_secs`` and at the end. The other nodes wait for it,
        polling every ``poll_s`` seconds for at most ``wait_s`` (default: the cluster's
        ``timeouts.registration``).

        Args:
            restore: the chief must restore (inference): no checkpoint is an error.
        """
        missing = not checkpoint_dir or tf.train.latest_checkpoint(checkpoint_dir) is None
        if restore and self.is_chief and missing:
            raise NotFoundError(f"session(restore=True): no checkpoint in "
                                f"{checkpoint_dir!r}")
        server = self.server()
        config = self.session_config()
        scaffold = tf.compat.v1.train.Scaffold()
        hooks = list(hooks)
        if self.is_chief:
            creator: Any = tf.compat.v1.train.ChiefSessionCreator(
                scaffold=scaffold, master=server.target, config=config,
                checkpoint_dir=checkpoint_dir)
            if checkpoint_dir and not restore:
                hooks.append(tf.compat.v1.train.CheckpointSaverHook(
                    checkpoint_dir, save_steps=save_checkpoint_steps,
                    save_secs=None if save_checkpoint_steps else save_checkpoint_secs or 600,
                    scaffold=scaffold))
        else:
            creator = PollingWorkerSessionCreator(
                scaffold, server.target, config, poll_s,
                wait_s if wait_s is not None else self.options.timeouts.registration)
        return tf.compat.v1.train.MonitoredSession(session_creator=creator, hooks=hooks)

    def numpy_batches(self, batch_size: int, columns: Sequence[str] | None = None,
                      drop_last: bool = False) -> Iterator[dict[str, Any]]:
        """This worker's input as dicts of numpy arrays, over all epochs left (``feed_dict``s
        for graph-mode code; ``ctx.epoch`` tells the epoch)."""
        return self.node.numpy_batches(batch_size, list(columns) if columns else None,
                                       drop_last)

    def dataset(self, batch_size: int, *, features: Sequence[str] | None = None,
                label: str | None = None, columns: Sequence[str] | None = None,
                drop_remainder: bool = False,
                equal_steps: bool | None = None) -> tf.data.Dataset:
        """This worker's input as a ``tf.data.Dataset`` of batches; each iteration (each
        Keras epoch) is the next input epoch (``TFConfig.epochs`` in all).

        Elements are ``(x, y)`` with ``features=``/``label=`` (``x`` float32 of shape
        ``(rows, len(features))``), ``x`` with ``features=`` only, else a dict of columns.

        Keras under ``MultiWorkerMirroredStrategy`` takes ``batch_size`` as the global
        batch (``tf.distribute``'s rule) and splits each batch across the workers: a step
        trains ``batch_size / num_workers`` rows on each.

        Args:
            equal_steps: give every worker the same number of batches per epoch (the
                smallest share's), which ``MultiWorkerMirroredStrategy`` needs: a worker
                that runs out early would leave the others waiting in a collective. It
                reads the first epoch in full before the first batch. Default: on for a
                bounded input with more than one worker and no ps nodes.
        """
        self._check_batch_size("dataset", batch_size)
        if self.task_type != WORKER_ROLE:
            raise ConfigError(f"dataset: role {self.task_type!r} has no input; only workers "
                              "are fed")
        if features is not None and columns is not None:
            raise ConfigError("dataset: pass either features=/label= or columns=, not both")
        features, label = self._feature_columns("dataset", features, label, columns)
        if equal_steps is None:
            equal_steps = (not self.is_ps_layout and self.num_workers > 1
                           and not self.options.streaming)
        if equal_steps and self.options.streaming:
            raise ConfigError("dataset: equal_steps needs a bounded input (streaming=False)")
        strategy = self.strategy() if equal_steps else None
        node_input = self.node.node_input()
        schema = self.input_schema
        assert schema is not None, "a worker with input knows the input's schema"
        steps: int | None = None
        pending: dict[str, Iterator[Any]] = {}
        if equal_steps:
            held = list(node_input.next_epoch())
            rows = sum(b.num_rows for b in held)
            steps = self._agreed_steps(strategy, rows, batch_size, drop_remainder)
            pending["source"] = iter(held)
        spec = element_spec(schema, features, label, columns)

        def generator() -> Iterator[Any]:
            source = pending.pop("source", None)
            if source is None:  # each iteration (each Keras epoch) reads the next epoch
                source = iter(node_input.next_epoch())
            for number, table in enumerate(rechunk(source, batch_size, drop_remainder)):
                if steps is not None and number >= steps:
                    break
                yield to_element(table, features, label, columns)

        dataset = tf.data.Dataset.from_generator(generator, output_signature=spec)
        options = tf.data.Options()
        # The input is split across workers already: no further sharding.
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options)

    def _agreed_steps(self, strategy: Any, rows: int, batch_size: int,
                      drop_remainder: bool) -> int:
        """Batches per epoch every worker can give: those of the smallest share."""
        counts = self._all_gather(strategy, rows)
        if self._row_counts is None:
            self._row_counts = counts
        fewest = min(counts)
        if sum(counts) == 0 and self._skip_empty():  # EmptyInputError unless allowed
            return 0
        if fewest == 0:
            raise EmptyInputError(f"worker {counts.index(0)} got no input rows (rows per worker: "
                                  f"{counts}); give the job more data or fewer workers")
        steps = fewest // batch_size if drop_remainder else math.ceil(fewest / batch_size)
        log.info("worker %d: %d rows; rows per worker %s -> %d batches of %d per epoch",
                 self.task_index, rows, counts, steps, batch_size)
        return steps

    def _all_gather(self, strategy: Any, value: int) -> list[int]:
        """Every worker's ``value``, by worker index (a SUM all-reduce of one-hot slots)."""
        slots = [0] * self.num_workers
        slots[self.task_index] = value
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda _: tf.constant(slots, dtype=tf.int64))
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        # Each worker's local replicas (one per GPU) all contributed the same slots.
        local_replicas = max(1, strategy.num_replicas_in_sync // self.num_workers)
        return [int(v) // local_replicas for v in total.numpy()]

    # ------------------------------------------------------------------ models
    @property
    def _mirrored(self) -> bool:
        return self._strategy is not None and self.num_workers > 1

    def save_model(self, model: Any, *, step: int = 0, epoch: int | None = None,
                   metrics: dict[str, Any] | None = None) -> ModelVersion | None:
        """Publish ``model`` as the next version in ``model_dir`` from the chief.

        ``model`` is a Keras model (``model.keras`` + a SavedModel in ``saved_model/``), a
        ``tf.Module`` (SavedModel) or a function that writes files into the directory it
        is given. Under MultiWorkerMirroredStrategy call it on every worker (saving may
        run collectives): the others write to a scratch directory that is removed.
        Returns the version on the chief, else ``None``.
        """
        return super().save_model(model, step=step, epoch=epoch, metrics=metrics)

    def maybe_save_model(self, model: Any, *, step: int,
                         metrics: dict[str, Any] | None = None) -> ModelVersion | None:
        """Publish a version when ``export_every_steps`` steps or ``export_every_s`` seconds
        passed since the last one. Under MultiWorkerMirroredStrategy (``ctx.strategy()``,
        not one built by hand) call it on every worker at the same steps; the chief's clock
        decides for all, checked every 10 steps."""
        return super().maybe_save_model(model, step=step, metrics=metrics)

    def write_model(self, model: Any, directory: Path, **write_options: Any) -> None:
        """``model.keras`` and ``saved_model/`` (``flink_dl.tensorflow.export``)."""
        write_model(model, directory)

    def write_elsewhere(self, model: Any, **write_options: Any) -> None:
        """Under MultiWorkerMirroredStrategy the other workers save too (collectives), to
        a scratch directory that is removed."""
        if not self._mirrored:
            return
        scratch = Path(tempfile.mkdtemp(prefix="scratch-model-", dir=self.node.work_dir))
        try:
            write_model(model, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def agree_on_clock(self, late: bool, step: int) -> bool:
        if not self._mirrored:
            return late
        # Every worker must agree, or one would wait in a collective: the chief's clock
        # decides, asked (one small all-reduce) every _CLOCK_EVERY steps.
        return step % _CLOCK_EVERY == 0 and self._all_gather(
            self._strategy, int(late and self.is_chief))[0] > 0

    def load_weights(self, model: Any, version: ModelVersion) -> None:
        path = version.file(KERAS_FILE)
        if not path.is_file():
            raise ConfigError(f"warm_start: model version {version.version} has no "
                              f"{KERAS_FILE} (it was not saved from a Keras model); load "
                              f"it yourself from ctx.init_version.path ({version.path})")
        loaded = tf.keras.models.load_model(str(path), compile=False)
        model.set_weights(loaded.get_weights())

    def input_is_empty(self) -> bool | None:
        if self._row_counts is not None:
            return sum(self._row_counts) == 0
        return super().input_is_empty()

    def export_callback(self) -> Any:
        """A Keras callback that calls ``maybe_save_model`` after every training batch
        (the step is the optimizer's count of batches, so it goes on after a resume) and
        ``save_model`` when ``fit`` ends."""
        return export_callback(self)

    def backup_callback(self, directory: str | None = None, *,
                        save_freq: str | int = "epoch") -> Any:
        """A Keras ``BackupAndRestore`` callback for resuming ``fit`` after a restart.

        It saves the model, the optimizer and the epoch to ``directory`` (default
        ``model_dir/checkpoints/<job_id>/keras-backup``: a new job never resumes from
        another job's backup; a warm start from a published version is ``init_from``) at
        the end of every epoch (or every ``save_freq`` batches); when the cluster restarts
        (``TFConfig.restart``), ``fit`` restores them and goes on from the epoch after the
        last one saved, so a job with ``epochs=E`` still trains ``E`` epochs in all. The
        dataset then serves the input epochs that are left (each input epoch holds the
        same rows). The backup is removed when ``fit`` finishes. Pass it on every worker
        (saving runs collectives under MultiWorkerMirroredStrategy)."""
        path = Path(directory) if directory else self.checkpoints.subdir(KERAS_BACKUP)
        if self.attempt > 0 and path.is_dir():
            log.info("%s %d attempt %d: Keras fit resumes from the backup in %s",
                     self.task_type, self.task_index, self.attempt, path)
        return tf.keras.callbacks.BackupAndRestore(backup_dir=str(path), save_freq=save_freq)
