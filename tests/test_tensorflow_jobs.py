"""TensorFlow jobs on the local mini-cluster (process mode): MultiWorkerMirroredStrategy,
the ps layout with a chief, distributed prediction through ps variables, stream training,
and in-operator SavedModel / Keras inference."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tensorflow as tf
from pyflink.table import StreamTableEnvironment

import flink_dl
from examples import streaming, tf_digits, tf_ps_wide
from examples.digits import load_split
from flink_dl.flink.clusters import cluster_configs_of
from flink_dl.models.store import ModelStore
from flink_dl.tensorflow import TFConfig, TFModelHandler, predict
from flink_dl.tensorflow import train as tf_train
from tests import tf_entries
from tests.leftovers import wait_clean


def _job_ids(env) -> list[str]:
    return [config.job_id for config in cluster_configs_of(env)]


def test_multi_worker_mirrored_digits(process_env, tmp_path: Path) -> None:
    model_dir = str(tmp_path / "models")
    events = tf_digits.train(model_dir, workers=2, epochs=12, env=process_env)
    metrics = [e for e in events if e["kind"] == "metrics"]
    assert {e["rank"] for e in metrics} == {0, 1}, "both workers trained"
    assert sorted(e["epoch"] for e in metrics if e["rank"] == 0) == list(range(12))
    losses = [json.loads(e["metrics"])["loss"] for e in sorted(metrics, key=lambda e: e["epoch"])
              if e["rank"] == 0]
    assert losses[-1] < losses[0] / 3, losses
    # Synchronous replicas: both workers report the same (all-reduced) loss each epoch.
    by_rank = {r: [json.loads(e["metrics"])["loss"] for e in metrics if e["rank"] == r]
               for r in (0, 1)}
    assert np.allclose(by_rank[0], by_rank[1], rtol=1e-5), by_rank
    models = [e for e in events if e["kind"] == "model"]
    assert len(models) == 1 and models[0]["rank"] == 0, "only the chief publishes"
    version = ModelStore(model_dir).open()
    assert "model.keras" in version.files
    assert "saved_model/saved_model.pb" in version.files
    for job_id in _job_ids(process_env):
        assert not wait_clean(job_id)
    accuracy, rows = tf_digits.evaluate(model_dir, env=process_env)
    assert rows == len(load_split()[1])
    assert accuracy >= 0.93, accuracy


def test_mirrored_training_resumes_after_a_kill(process_env, tmp_path: Path) -> None:
    """MultiWorkerMirroredStrategy on digits, worker 1's process SIGKILLed after epoch 2:
    the cluster restarts (attempt 1), Keras resumes from the backup at epoch 3, the job
    completes with 10 epochs in all and held-out accuracy >= 0.93; nothing is left."""
    from flink_dl import RestartPolicy

    model_dir = tmp_path / "models"
    out = tmp_path / "out"
    out.mkdir()
    t_env = StreamTableEnvironment.create(process_env)
    config = TFConfig(workers=2, entry=tf_entries.digits_killed_once, epochs=10,
                      model_dir=str(model_dir), name="tf-digits-ft",
                      properties={"out": str(out), "kill_after_epoch": "2"},
                      restart=RestartPolicy(attempts=2, delay_s=0.5))
    # Flink's collect sink fails on a restart unless checkpointing is on: run, not collect.
    tf_train(process_env, t_env.from_pandas(load_split()[0]), config)
    flink_dl.execute(process_env, "tf-digits-ft", timeout_s=400)
    finished = {p.name: [int(line) for line in p.read_text().split()]
                for p in out.glob("epochs-*")}
    assert finished == {"epochs-0-0": [0, 1, 2], "epochs-1-0": [0, 1, 2],
                        "epochs-0-1": list(range(3, 10)), "epochs-1-1": list(range(3, 10))}, \
        finished
    store = ModelStore(model_dir)
    assert store.version_numbers() == [1]
    backup = model_dir / "checkpoints" / "keras-backup"
    assert not [p for p in backup.rglob("*") if p.is_file()], "fit removes its backup at the end"
    assert not wait_clean(config.job_id)
    accuracy, _ = tf_digits.evaluate(str(model_dir), env=process_env)
    assert accuracy >= 0.93, accuracy


def test_ps_layout_with_chief_and_distributed_prediction(process_env, tmp_path: Path) -> None:
    model_dir = str(tmp_path / "models")
    frame = tf_ps_wide.make_data(8000)
    events = tf_ps_wide.train(model_dir, frame, epochs=2, env=process_env,
                              timeouts={"stop_grace": 60.0})
    train_jobs = _job_ids(process_env)
    stopped = [json.loads(e["metrics"]) for e in events if e["kind"] == "node"]
    # The ps node left its serve loop on the AM's request and returned by itself: with
    # stop_grace=60 s a kill would have cost a minute and written no event.
    assert stopped == [{"role": "ps", "index": 0, "exit": "stopped"}]
    reports = [e for e in events if e["kind"] == "metrics"]
    assert {e["rank"] for e in reports} == {1, 2}, "both workers (ranks 1, 2) trained"
    assert ModelStore(model_dir).version_numbers(), "the chief published versions"
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(
        str(Path(model_dir) / tf_ps_wide.CHECKPOINTS)))
    steps = reader.get_tensor("global_step")
    assert steps >= 2 * 2 * (4000 // 64), steps  # every worker's batches, both epochs
    w, b = reader.get_tensor("w"), reader.get_tensor("b")
    for job_id in train_jobs:
        assert not wait_clean(job_id), "nothing is left behind, the ps node included"

    test_frame = tf_ps_wide.make_data(3000, seed=1)
    predicted = tf_ps_wide.predict(model_dir, test_frame, env=process_env)
    assert sorted(predicted.id) == list(range(3000)), "every row predicted exactly once"
    predicted = predicted.set_index("id").sort_index()
    x = test_frame[tf_ps_wide.FEATURES].to_numpy(np.float32)
    expected = 1 / (1 + np.exp(-(x @ w[:, 0] + b[0])))
    np.testing.assert_allclose(predicted.prob.to_numpy(), expected, atol=1e-5)
    accuracy = float(((predicted.prob > 0.5).astype(int) == test_frame.label).mean())
    assert accuracy >= 0.9, accuracy
    for job_id in _job_ids(process_env):
        assert not wait_clean(job_id)


def _serve(saved_model: Path, x: np.ndarray) -> np.ndarray:
    """The output of a SavedModel's serving signature for the batch ``x``."""
    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    (name,) = signature.structured_input_signature[1]
    (output,) = signature(**{name: tf.constant(x)}).values()
    return output.numpy()


def test_stream_training_exports_versions_while_running(process_env, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    t_env = StreamTableEnvironment.create(process_env)
    source = streaming.source_table(t_env, "tf_train_src", 2000)
    config = TFConfig(workers=2, entry=tf_entries.stream_entry, streaming=True,
                      model_dir=str(model_dir), export_every_steps=15, name="tf-stream")
    tf_train(process_env, source, config)
    client = process_env.execute_async("tf-stream")
    try:
        deadline = time.monotonic() + 240
        while len(ModelStore(model_dir).version_numbers()) < 3:
            assert time.monotonic() < deadline, "no 3 model versions within 240 s"
            assert not client.get_job_execution_result().done(), "the job ended"
            time.sleep(1)
        status = client.get_job_status().result().name
    finally:
        client.cancel().result()
        flink_dl.cleanup(process_env)
    assert status == "RUNNING", status
    store = ModelStore(model_dir)
    numbers = store.version_numbers()
    assert len(numbers) >= 3
    steps = [store.open(n).step for n in numbers[:3]]
    assert steps == [15, 30, 45], steps
    # Each exported version serves: the signature maps 4 features to one output, and the
    # model went on learning between the first and the last version.
    x = np.random.default_rng(1).uniform(-1, 1, size=(8, 4)).astype(np.float32)
    first, last = (_serve(Path(store.open(n).path) / "saved_model", x)
                   for n in (numbers[0], numbers[-1]))
    assert first.shape == last.shape == (8, 1)
    assert np.isfinite(first).all() and np.isfinite(last).all()
    assert not np.allclose(first, last), "the weights did not change between versions"
    assert not wait_clean(config.job_id)


def _keras_model(tmp_path: Path) -> tuple[tf.keras.Model, Path, Path]:
    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, "tanh"),
                                 tf.keras.layers.Dense(2)])
    keras_file, saved = tmp_path / "model.keras", tmp_path / "saved"
    model.save(keras_file)
    model.export(str(saved))
    return model, keras_file, saved


@pytest.mark.parametrize("form", ["saved_model", "keras"])
def test_predict_equals_calling_the_model(process_env, tmp_path: Path, form: str) -> None:
    model, keras_file, saved = _keras_model(tmp_path)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(700, 4)).astype(np.float32), columns=list("abcd"))
    frame.insert(0, "id", np.arange(700, dtype=np.int64))
    t_env = StreamTableEnvironment.create(process_env)
    handler = TFModelHandler(saved if form == "saved_model" else keras_file,
                             features=list("abcd"),
                             outputs={"y0": pa.float32(), "y1": pa.float32()}, batch_size=128)
    out = predict(t_env.from_pandas(frame), handler)
    with out.execute().collect() as results:
        rows = sorted(((r[0], r[5], r[6]) for r in results), key=lambda r: r[0])
    assert [r[0] for r in rows] == list(range(700))
    expected = model(frame[list("abcd")].to_numpy(), training=False).numpy()
    np.testing.assert_allclose(np.array([[r[1], r[2]] for r in rows]), expected, atol=1e-5)
