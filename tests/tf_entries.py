"""TensorFlow entries used by the job tests (they run in the node processes)."""

from __future__ import annotations

from examples.streaming import FEATURES


def stream_entry(ctx) -> None:
    """Keras ``fit`` on the endless stream under MultiWorkerMirroredStrategy; the export
    callback publishes a version every ``export_every_steps`` batches."""
    import tensorflow as tf

    strategy = ctx.strategy()
    dataset = ctx.dataset(32, features=FEATURES, label="y")
    with strategy.scope():
        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential([tf.keras.Input((len(FEATURES),)),
                                     tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse")
    model.fit(dataset, steps_per_epoch=10, epochs=1_000_000, verbose=0,
              callbacks=[ctx.export_callback()])


def digits_killed_once(ctx) -> dict:
    """The digits example's entry; on attempt 0 worker 1 SIGKILLs its own process after
    epoch ``kill_after_epoch`` (its Keras backup saved). Each attempt records the Keras
    epochs it finished in ``out/epochs-<worker>-<attempt>`` (one per line)."""
    import os
    import signal
    import time
    from pathlib import Path

    import tensorflow as tf

    from examples import tf_digits

    out = Path(ctx.properties["out"])
    kill_after = int(ctx.properties["kill_after_epoch"])

    class KillProbe(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            with open(out / f"epochs-{ctx.task_index}-{ctx.attempt}", "a") as record:
                record.write(f"{epoch}\n")
            if ctx.attempt == 0 and ctx.task_index == 1 and epoch == kill_after:
                time.sleep(1.0)  # worker 0 has saved its backup too: it waits on worker 1
                os.kill(os.getpid(), signal.SIGKILL)

    return tf_digits.train_entry(ctx, extra_callbacks=(KillProbe(),))


def keras_clicks(ctx) -> None:
    """Logistic regression in Keras on the pipeline's features (``ctx.features``)."""
    import tensorflow as tf

    strategy = ctx.strategy()
    with strategy.scope():
        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential([tf.keras.Input((len(ctx.features),)),
                                     tf.keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    model.fit(ctx.dataset(128), epochs=ctx.epochs, verbose=0)
    ctx.save_model(model)
