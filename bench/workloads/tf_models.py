"""W1's model and training loop in Keras (``tf_keras``, as TensorFlow jobs use), shared by
the flink-dl entry and the plain ``tf.distribute`` limit so the two differ only in how data
and the cluster arrive."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.drivers.cpu_breakdown import CpuSampler
from bench.workloads.data import BATCH, FEATURES, WORKERS, read_part

#: Keras under MultiWorkerMirroredStrategy takes a dataset's batch as the global batch and
#: gives each worker its share of it, so 1024 rows per worker per step (PyTorch W1's batch)
#: is a dataset batch of 2048.
GLOBAL_BATCH = BATCH * WORKERS

#: One op thread per worker (two inter-op: a collective waits on one), as the PyTorch W1
#: runs one torch thread per rank; read by TensorFlow at start-up, so set in the environment.
THREAD_ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2",
              "OMP_NUM_THREADS": "1", "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def read_numpy(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_part(path) for path in files]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def worker_rates(reports: list[dict], wall: float) -> dict[str, float]:
    """Samples/s, steps, data and fit seconds of one run from its workers' reports."""
    if len(reports) != WORKERS:
        raise RuntimeError(f"expected {WORKERS} worker reports, got {reports}")
    steps = max(r["steps"] for r in reports)
    return {"samples_per_s": steps * GLOBAL_BATCH / max(r["seconds"] for r in reports),
            "wall_s": wall, "steps": steps, "read_s": max(r["read_s"] for r in reports),
            "fit_s": max(r["seconds"] - r["read_s"] for r in reports)}


def cpu_noise(sampler: CpuSampler) -> dict[str, float]:
    """The run's CPU seconds busy outside it on the machine and stolen by the hypervisor."""
    return {"elsewhere_s": sampler.elsewhere_s, "steal_s": sampler.steal_s}


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
