"""W1's model and training loop in Keras (``tf_keras``, as TensorFlow jobs use), shared by
the flink-dl entry and the plain ``tf.distribute`` limit so the two differ only in how data
and the cluster arrive."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.csv as pacsv

from bench.workloads import BATCH, CONVERT, FEATURES

WORKERS = 2
#: Keras under MultiWorkerMirroredStrategy takes a dataset's batch as the global batch and
#: gives each worker its share of it, so 1024 rows per worker per step (PyTorch W1's batch)
#: is a dataset batch of 2048.
GLOBAL_BATCH = BATCH * WORKERS

#: One op thread per worker (two inter-op: a collective waits on one), as the PyTorch W1
#: runs one torch thread per rank; read by TensorFlow at start-up, so set in the environment.
THREAD_ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2",
              "OMP_NUM_THREADS": "1", "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def read_numpy(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in files:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(
            column_names=[*FEATURES, "label"]), convert_options=CONVERT)
        xs.append(np.stack([table.column(f).to_numpy() for f in FEATURES], axis=1))
        ys.append(table.column("label").to_numpy())
    return np.concatenate(xs), np.concatenate(ys)


def fit_w1(tf: Any, strategy: Any, dataset: Any) -> int:
    """One epoch of the W1 MLP (16-64-64-1, MSE, SGD) under ``strategy``; the steps run."""
    with strategy.scope():
        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential([
            tf.keras.Input((len(FEATURES),)),
            tf.keras.layers.Dense(64, activation="relu"),
            tf.keras.layers.Dense(64, activation="relu"),
            tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss="mse")
    model.fit(dataset, epochs=1, verbose=0)
    return int(model.optimizer.iterations.numpy())
