"""Train a Keras digits classifier with MultiWorkerMirroredStrategy inside Flink, then
predict with its SavedModel.

Data: scikit-learn's bundled 8x8 digits (no download), 80 % train / 20 % held out (the same
split as ``examples/digits.py``). Each of the workers gets its share of the training table
through shared memory as a ``tf.data.Dataset`` (``ctx.dataset``); Keras ``fit`` runs under
``ctx.strategy()`` (synchronous all-reduce over TensorFlow's own gRPC); the chief publishes
the model (``model.keras`` + a SavedModel). A second Flink job runs in-operator batch
inference on the held-out table from the SavedModel and prints accuracy.

    python examples/tf_digits.py [--workers 2] [--epochs 20] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

import pyarrow as pa

from examples.digits import PIXELS, held_out_accuracy, load_split

log = logging.getLogger("tf_digits")


def build_model(ctx, strategy):
    """The digits classifier, compiled under ``strategy``'s scope."""
    import tensorflow as tf

    with strategy.scope():
        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential([
            tf.keras.Input((len(PIXELS),)),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dense(10),
        ])
        model.compile(
            optimizer=tf.keras.optimizers.Adam(float(ctx.properties.get("lr", "0.003"))),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"])
    return model


def report_callback(ctx):
    """A Keras callback that reports each epoch's loss, accuracy and time (``ctx.report``)."""
    import tensorflow as tf

    class Report(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            ctx.report(epoch=epoch, step=epoch + 1, loss=float(logs["loss"]),
                       accuracy=float(logs["accuracy"]),
                       seconds=time.perf_counter() - self.started)

    return Report()


def train_entry(ctx, extra_callbacks: tuple = ()) -> dict:
    """Runs in every worker's process with TF_CONFIG set; resumes after a restart."""
    strategy = ctx.strategy()  # first: TensorFlow wants the strategy before other work
    batch_size = int(ctx.properties.get("batch_size", "32"))
    dataset = ctx.dataset(batch_size, features=PIXELS, label="label")
    model = build_model(ctx, strategy)
    callbacks = [ctx.backup_callback(), report_callback(ctx), *extra_callbacks]
    history = model.fit(dataset, epochs=ctx.epochs, verbose=0, callbacks=callbacks)
    ctx.save_model(model, step=ctx.epochs, metrics={"loss": history.history["loss"][-1]})
    return {"worker": ctx.task_index, "loss": history.history["loss"][-1]}


def train(model_dir: str, workers: int = 2, epochs: int = 20,
          properties: dict[str, str] | None = None, env=None, entry=train_entry,
          restart=None) -> list[dict]:
    """Run the training job; returns its events (metrics and model versions)."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_dl.tensorflow import TFConfig
    from flink_dl.tensorflow import train as tf_train

    train_frame, _ = load_split()
    env = env or StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    table = t_env.from_pandas(train_frame)
    config = TFConfig(workers=workers, entry=entry, epochs=epochs, model_dir=model_dir,
                      properties=properties or {}, name="tf-digits", restart=restart)
    events = tf_train(env, table, config)
    with events.execute_and_collect("tf-digits-train") as results:
        return [row.as_dict() for row in results]


def evaluate(model_dir: str, env=None) -> tuple[float, int]:
    """Batch inference on the held-out images with the newest SavedModel: accuracy, rows."""
    from flink_dl.tensorflow import predict

    return held_out_accuracy(
        lambda table: predict(table, model_dir, features=PIXELS,
                              outputs={"predicted": pa.int64()},
                              postprocess=lambda logits: logits.argmax(axis=1),
                              batch_size=512), env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args(argv)
    from flink_dl.log import configure_logging

    configure_logging()
    model_dir = args.model_dir or tempfile.mkdtemp(prefix="flink-dl-tf-digits-")
    started = time.monotonic()
    log.info("training on %d TensorFlow workers for %d epochs (embedded Flink); models -> %s",
             args.workers, args.epochs, model_dir)
    events = train(model_dir, args.workers, args.epochs)
    print("epoch  loss (chief)  accuracy (chief)")
    for event in (e for e in events if e["kind"] == "metrics" and e["rank"] == 0):
        metrics = json.loads(event["metrics"])
        print(f"{event['epoch']:5d}  {metrics['loss']:12.4f}  {metrics['accuracy']:16.4f}")
    versions = [e for e in events if e["kind"] == "model"]
    print(f"training job: {time.monotonic() - started:.1f}s; model version "
          f"{versions[-1]['version']} at {versions[-1]['path']}")
    started = time.monotonic()
    accuracy, rows = evaluate(model_dir)
    print(f"SavedModel inference on {rows} held-out images: accuracy {accuracy:.4f} "
          f"({time.monotonic() - started:.1f}s)")
    return 0 if accuracy >= 0.93 else 1


if __name__ == "__main__":
    import flink_dl

    flink_dl.use_jvm_archive()  # before the first gateway JVM: faster start-up
    raise SystemExit(main())
