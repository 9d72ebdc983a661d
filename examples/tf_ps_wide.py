"""A wide (linear, logistic) model trained in the parameter-server layout, then served by
distributed prediction through the same ps nodes.

Layout: 1 chief, 2 workers, 1 ps. The model's variables live on the ps node (a TensorFlow
gRPC server the plugin runs); each worker reads its share of the Flink input and trains
between-graph, asynchronously (TensorFlow 1 graph code via ``tf.compat.v1``, as in the
source article). The chief initialises the variables, checkpoints them, publishes model
versions (a SavedModel) while the workers train, and exports the final model when the AM
tells it the workers are done; then the AM stops the ps node.

Prediction: a second job with 2 workers and 1 ps: worker 0 restores the checkpoint onto
the ps node, every worker predicts its share of the input through those variables and
writes the rows back into the Flink stream.

    python examples/tf_ps_wide.py [--rows 20000] [--epochs 3] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

FEATURES = [f"f{i}" for i in range(32)]
CHECKPOINTS = "checkpoints"
log = logging.getLogger("tf_ps_wide")
PREDICTIONS = pa.schema([("id", pa.int64()), ("label", pa.int64()), ("prob", pa.float32())])


def make_data(rows: int, seed: int = 0) -> pd.DataFrame:
    """Rows of 32 features; the label follows a fixed logistic model (plus noise)."""
    rng = np.random.default_rng(seed)
    weights = np.linspace(-2.0, 2.0, len(FEATURES)).astype(np.float32)
    x = rng.normal(size=(rows, len(FEATURES))).astype(np.float32)
    logits = x @ weights + 0.3 + rng.normal(scale=0.5, size=rows)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame.insert(0, "id", np.arange(rows, dtype=np.int64))
    frame["label"] = (logits > 0).astype(np.int64)
    return frame


def build_graph(ctx) -> dict:
    """The wide model with its variables on the ps nodes (graph mode)."""
    import tensorflow as tf

    with tf.compat.v1.device(ctx.device_setter()):
        x = tf.compat.v1.placeholder(tf.float32, [None, len(FEATURES)], name="x")
        y = tf.compat.v1.placeholder(tf.float32, [None], name="y")
        w = tf.compat.v1.get_variable("w", [len(FEATURES), 1],
                                      initializer=tf.compat.v1.zeros_initializer())
        b = tf.compat.v1.get_variable("b", [1], initializer=tf.compat.v1.zeros_initializer())
        step = tf.compat.v1.train.get_or_create_global_step()
        logits = tf.squeeze(tf.matmul(x, w), 1) + b
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
        train_op = tf.compat.v1.train.AdagradOptimizer(0.3).minimize(loss, global_step=step)
    return {"x": x, "y": y, "w": w, "b": b, "step": step, "loss": loss, "train": train_op,
            "prob": tf.sigmoid(logits)}


def saved_model_writer(w: np.ndarray, b: np.ndarray):
    """A function that writes the model with weights ``w``, ``b`` as a SavedModel."""

    def write(directory: Path) -> None:
        import tensorflow as tf

        graph = tf.Graph()
        with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
            x = tf.compat.v1.placeholder(tf.float32, [None, len(FEATURES)], name="x")
            prob = tf.sigmoid(tf.squeeze(tf.matmul(x, tf.constant(w)), 1) + tf.constant(b))
            builder = tf.compat.v1.saved_model.Builder(str(directory / "saved_model"))
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x},
                                                                       {"prob": prob})
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()

    return write


def train_entry(ctx) -> dict:
    """Chief: initialise, checkpoint, publish versions. Workers: train on their share."""
    graph = build_graph(ctx)
    checkpoints = str(Path(ctx.options.model_dir) / CHECKPOINTS)
    if ctx.task_type == "chief":
        with ctx.session(checkpoint_dir=checkpoints, save_checkpoint_secs=5) as session:
            while not ctx.wait_for_stop(2.0):  # the AM asks once every worker is done
                w, b, step = session.run([graph["w"], graph["b"], graph["step"]])
                if step:
                    ctx.maybe_save_model(saved_model_writer(w, b), step=int(step))
            w, b, step = session.run([graph["w"], graph["b"], graph["step"]])
        ctx.save_model(saved_model_writer(w, b), step=int(step))
        return {"role": "chief", "global_step": int(step)}
    batch_size = int(ctx.properties.get("batch_size", "64"))
    steps, epoch, total, seen = 0, 0, 0.0, 0
    with ctx.session() as session:
        for batch in ctx.numpy_batches(batch_size, columns=[*FEATURES, "label"]):
            if ctx.epoch != epoch:
                ctx.report(epoch=epoch, step=steps, loss=total / max(seen, 1))
                epoch, total, seen = ctx.epoch, 0.0, 0
            x = np.stack([batch[f] for f in FEATURES], axis=1)
            _, loss = session.run([graph["train"], graph["loss"]],
                                  {graph["x"]: x, graph["y"]: batch["label"].astype(np.float32)})
            steps += 1
            total += float(loss) * len(x)
            seen += len(x)
        ctx.report(epoch=epoch, step=steps, loss=total / max(seen, 1))
    return {"role": "worker", "index": ctx.task_index, "steps": steps}


def predict_entry(ctx) -> dict:
    """Worker 0 restores the checkpoint onto the ps node; every worker predicts its share."""
    graph = build_graph(ctx)
    checkpoints = str(Path(ctx.properties["model_dir"]) / CHECKPOINTS)
    rows = 0
    with ctx.session(checkpoint_dir=checkpoints, restore=True) as session:
        for batch in ctx.numpy_batches(4096, columns=["id", *FEATURES, "label"]):
            x = np.stack([batch[f] for f in FEATURES], axis=1)
            prob = session.run(graph["prob"], {graph["x"]: x})
            ctx.write({"id": batch["id"], "label": batch["label"],
                       "prob": prob.astype(np.float32)})
            rows += len(x)
    return {"index": ctx.task_index, "rows": rows}


def train(model_dir: str, frame: pd.DataFrame, epochs: int = 3, env=None,
          **config_options) -> list[dict]:
    """The training job (1 chief, 2 workers, 1 ps); returns its events."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_dl.tensorflow import TFConfig
    from flink_dl.tensorflow import train as tf_train

    env = env or StreamExecutionEnvironment.get_execution_environment()
    table = StreamTableEnvironment.create(env).from_pandas(frame)
    config = TFConfig(workers=2, ps=1, chief=1, entry=train_entry, epochs=epochs,
                      model_dir=model_dir, export_every_s=3.0, name="tf-wide",
                      **config_options)
    events = tf_train(env, table, config)
    with events.execute_and_collect("tf-wide-train") as results:
        return [row.as_dict() for row in results]


def predict(model_dir: str, frame: pd.DataFrame, env=None) -> pd.DataFrame:
    """Distributed prediction (2 workers, 1 ps) through the checkpointed variables."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_dl.tensorflow import TFConfig, predict_on_cluster

    env = env or StreamExecutionEnvironment.get_execution_environment()
    table = StreamTableEnvironment.create(env).from_pandas(frame)
    config = TFConfig(workers=2, ps=1, entry=predict_entry, properties={"model_dir": model_dir},
                      name="tf-wide-predict")
    rows = predict_on_cluster(env, table, config, PREDICTIONS)
    with rows.execute_and_collect("tf-wide-predict") as results:
        return pd.DataFrame([r.as_dict() for r in results])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args(argv)
    from flink_dl.log import configure_logging

    configure_logging()
    model_dir = args.model_dir or tempfile.mkdtemp(prefix="flink-dl-tf-wide-")
    train_frame, test_frame = make_data(args.rows), make_data(args.rows // 10, seed=1)
    started = time.monotonic()
    events = train(model_dir, train_frame, args.epochs)
    versions = [e for e in events if e["kind"] == "model"]
    stopped = [e for e in events if e["kind"] == "node"]
    print(f"training job (1 chief, 2 workers, 1 ps): {time.monotonic() - started:.1f}s; "
          f"{len(versions)} model versions; ps nodes stopped cleanly: {len(stopped)}")
    started = time.monotonic()
    predicted = predict(model_dir, test_frame)
    accuracy = float(((predicted.prob > 0.5).astype(int) == predicted.label).mean())
    print(f"distributed prediction of {len(predicted)} rows through the ps node: accuracy "
          f"{accuracy:.4f} ({time.monotonic() - started:.1f}s)")
    return 0 if accuracy >= 0.9 else 1


if __name__ == "__main__":
    import flink_dl

    flink_dl.use_jvm_archive()  # before the first gateway JVM: faster start-up
    raise SystemExit(main())
