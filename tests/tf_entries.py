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
