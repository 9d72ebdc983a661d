"""``train`` and ``predict_on_cluster``: TensorFlow clusters inside a Flink job.

Each role (``chief``, ``worker``, ``ps``) is one Flink operator of as many subtasks as nodes;
only the workers are fed the input. Every node gets ``TF_CONFIG`` built from the cluster
spec before its entry runs. The ps nodes run a TensorFlow gRPC server and nothing else
until the AM stops them (``flink_dl.tensorflow.rules``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.cluster.context import NodeContext
from flink_dl.errors import ConfigError
from flink_dl.flink.feed import output_type_info
from flink_dl.flink.operators import DropAll
from flink_dl.models.events import EVENTS_SCHEMA, event_columns
from flink_dl.tensorflow.config import PS_ROLE, TFConfig, TFOptions
from flink_dl.training.build import build
from flink_dl.training.entry import TrainingEntry

log = logging.getLogger("flink_dl.tensorflow")


class TFEntry(TrainingEntry):
    """The node entry: ``TF_CONFIG``, then the ps server or the user's entry."""

    def __call__(self, node: NodeContext) -> Any:
        from flink_dl.tensorflow.tf_config import build_tf_config

        tf_config = build_tf_config(node.cluster_spec, node.role, node.index)
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
        if node.role == PS_ROLE:
            return run_ps(node, tf_config)
        return super().__call__(node)

    @contextlib.contextmanager
    def session(self, node: NodeContext) -> Iterator[Any]:
        from flink_dl.tensorflow.context import TFContext

        options = self.options
        assert isinstance(options, TFOptions)
        yield TFContext(node, json.loads(os.environ["TF_CONFIG"]), options)


def run_ps(node: NodeContext, tf_config: dict[str, Any]) -> dict[str, Any]:
    """A ps node: serve variables until the AM asks to stop, then return (exit 0)."""
    import tensorflow as tf

    server = tf.distribute.Server(tf.train.ClusterSpec(tf_config["cluster"]),
                                  job_name=PS_ROLE, task_index=node.index, start=True)
    log.info("ps %d: serving at %s", node.index, server.target)
    while not node.wait_for_stop(timeout=1.0):
        node.heartbeat()  # serving is progress (timeouts.progress)
    log.info("ps %d: asked to stop; exiting", node.index)
    node.write(event_columns("node", rank=-1, epoch=0, step=0, attempt=node.attempt,
                             metrics={"role": PS_ROLE, "index": node.index,
                                      "exit": "stopped"}))
    return {"role": PS_ROLE, "index": node.index, "exit": "stopped"}


def _build(env: StreamExecutionEnvironment, input: Table | DataStream | None,
           config: TFConfig, worker_schema: pa.Schema,
           events: bool) -> tuple[DataStream, list[DataStream]]:
    return build(env, input, config, TFEntry, worker_schema=worker_schema, events=events)


def train(env: StreamExecutionEnvironment, input: Table | DataStream | None,
          config: TFConfig) -> DataStream:
    """Add a TensorFlow training cluster (``config.roles``) to ``env``.

    ``input`` (a Table, a DataStream of named rows, or ``None``) is split across the workers
    as Arrow batches (``ctx.dataset(...)``); the entry runs in every worker's and the
    chief's process. Returns the stream of training events (``EVENTS_SCHEMA``): one
    ``"model"`` row per published version, one ``"metrics"`` row per ``ctx.report``, one
    ``"node"`` row per ps node that stopped. Run the job with ``flink_dl.execute(env)``.
    """
    workers, others = _build(env, input, config, EVENTS_SCHEMA, events=True)
    return workers.union(*others) if others else workers


def predict_on_cluster(env: StreamExecutionEnvironment, input: Table | DataStream,
                       config: TFConfig, output_schema: pa.Schema) -> DataStream:
    """Inference by a TensorFlow cluster running your entry: each worker reads its share of
    ``input`` and ``ctx.write``s rows of ``output_schema``, which the returned stream
    carries. (``predict_distributed`` serves a saved model instead, as in PyTorch.)

    With ``ps`` nodes the model's variables live on them: the chief restores them (e.g.
    ``ctx.session(checkpoint_dir=...)``) and every worker predicts its share through them,
    the article's distributed prediction for models too large for one process.
    """
    if not isinstance(output_schema, pa.Schema):
        raise ConfigError(f"output_schema must be a pyarrow.Schema, got "
                          f"{type(output_schema).__name__}")
    if input is None:
        raise ConfigError("predict_on_cluster needs an input for the workers")
    workers, others = _build(env, input, config, output_schema, events=False)
    # Whoever consumes (or collects) the predictions also runs the ps and chief nodes.
    out_type = output_type_info(output_schema)
    ties = [s.flat_map(DropAll(), output_type=out_type).name(f"{config.name}-tie")
            for s in others]
    return workers.union(*ties) if ties else workers
