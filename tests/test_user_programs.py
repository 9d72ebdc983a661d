"""Programs as new users write them, from the README alone, run as real Flink jobs.

The README's PyTorch and TensorFlow snippets are executed as written (only the model
directory is moved to a temporary one); ``examples/features.py`` is the DECIMAL/BOOLEAN
feature form with a loader per epoch; the other tests are the mistakes users make (an
empty input, a string feature) and the warm start a second job asks for.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyflink.table import StreamTableEnvironment

import flink_dl
from flink_dl.errors import FeatureTypeError, MissingColumnError
from flink_dl.models.store import ModelStore
from flink_dl.pytorch import TorchConfig
from flink_dl.pytorch import predict as torch_predict
from flink_dl.pytorch import train as torch_train
from flink_dl.tensorflow import TFConfig
from flink_dl.tensorflow import predict as tf_predict
from flink_dl.tensorflow import train as tf_train
from tests.conftest import execution_mode

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def readme_block(heading: str) -> str:
    """The first ```python block under ``## <heading>`` in the README."""
    text = README.read_text()
    section = text[text.index(f"\n## {heading}\n"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block under ## {heading}"
    return match.group(1)


def run_readme_block(heading: str, model_dir_in_readme: str, model_dir: Path) -> dict:
    code = readme_block(heading)
    assert model_dir_in_readme in code
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with execution_mode("process"):
        exec(compile(code.replace(model_dir_in_readme, str(model_dir)), f"README {heading}",
                     "exec"), namespace)
    return namespace


def _events(stream: Any) -> list[dict[str, Any]]:
    with stream.execute_and_collect("events") as rows:
        return [{"kind": r["kind"], "rank": r["rank"], "epoch": r["epoch"], "step": r["step"],
                 "metrics": json.loads(r["metrics"])} for r in rows]


def _linear_rows(count: int = 4000) -> pd.DataFrame:
    x = np.random.default_rng(1).normal(size=(count, 16)).astype("float32")
    return pd.DataFrame(x, columns=[f"f{i}" for i in range(16)]).assign(y=x.sum(axis=1) / 4)


def test_readme_pytorch_snippet_then_a_warm_started_second_job(tmp_path: Path) -> None:
    models = tmp_path / "models"
    ns = run_readme_block("PyTorch", "/tmp/torch-models", models)
    store = ModelStore(models)
    assert store.latest_number() == 1
    scored = ns["scored"].to_pandas()
    assert len(scored) == 20_000 and set(scored["model_version"]) == {1}
    mse = float(np.mean((scored["prediction"] - scored["y"]) ** 2))
    assert mse < 0.01, mse  # y has variance 1: the linear model was learned
    checkpoints = list((models / "checkpoints").iterdir())
    assert len(checkpoints) == 1  # one job's folder, its newest 3 checkpoints kept
    assert len(list(checkpoints[0].glob("ckpt-*.pt"))) == 3

    # A second job on the same model_dir: its own checkpoints (none yet), so it trains all
    # 5 epochs, starting from version 1 because it asks for it (init_from).
    with execution_mode("process") as env:
        t_env = StreamTableEnvironment.create(env)
        events = _events(torch_train(env, t_env.from_pandas(_linear_rows()), TorchConfig(
            world_size=2, entry=ns["entry"], epochs=5, model_dir=str(models),
            init_from=str(models))))
    metrics = sorted((e for e in events if e["kind"] == "metrics" and e["rank"] == 0),
                     key=lambda e: e["epoch"])
    assert [e["epoch"] for e in metrics] == [0, 1, 2, 3, 4]
    assert metrics[0]["metrics"]["loss"] < 0.01, "a warm start begins near the solution"
    assert store.latest_number() == 2
    assert len(list((models / "checkpoints").iterdir())) == 2


def test_readme_tensorflow_snippet(tmp_path: Path) -> None:
    ns = run_readme_block("TensorFlow", "/tmp/tf-models", tmp_path / "tf-models")
    assert ModelStore(tmp_path / "tf-models").latest_number() == 1
    scored = ns["scored"].to_pandas()
    assert len(scored) == 20_000
    mse = float(np.mean((scored["prediction"] - scored["y"]) ** 2))
    assert mse < 0.02, mse


def test_decimal_boolean_tinyint_features_a_loader_per_epoch_and_no_ddp(tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import features  # examples/features.py, as a user runs it
    finally:
        sys.path.remove(str(EXAMPLES))
    with execution_mode("process"):
        result = features.main(str(tmp_path / "models"), rows=6000, epochs=3)
    assert result["metrics"]["rows_per_epoch"] == [6000, 6000, 6000]
    fitted = dict(zip(features.TRUE_COEF, result["metrics"]["coef"], strict=True))
    for name, true in features.TRUE_COEF.items():
        assert abs(fitted[name] - true) < 1.0, (name, fitted)
    assert result["scored_rows"] == 6000 and result["model_versions"] == [1]
    assert result["rmse"] < 1.2 * features.NOISE


def _empty_job_entry(ctx: Any) -> None:
    import torch

    model = torch.nn.Linear(2, 1)
    for _ in ctx.dataloader(8, features=["a", "b"], label="y"):
        pass
    ctx.save_model(model)


def test_an_empty_input_fails_clearly_and_publishes_nothing(tmp_path: Path) -> None:
    for allow in (False, True):
        models = tmp_path / f"models-{allow}"
        with execution_mode("process") as env:
            t_env = StreamTableEnvironment.create(env)
            rows = t_env.from_pandas(pd.DataFrame({"a": [1.0], "b": [2.0], "y": [3.0]}))
            empty = rows.where(rows.a > 100)  # a bounded input with no rows
            torch_train(env, empty, TorchConfig(world_size=1, entry=_empty_job_entry,
                                                model_dir=str(models),
                                                allow_empty_input=allow))
            if allow:
                flink_dl.execute(env, timeout_s=300)
            else:
                with pytest.raises(flink_dl.FlinkDLError,
                                   match="the training input had no rows") as failure:
                    flink_dl.execute(env, timeout_s=300)
                assert "allow_empty_input=True" in str(failure.value)
        assert ModelStore(models).latest_number() is None


def test_a_string_feature_fails_at_build_time_naming_the_column(flink_env: Any) -> None:
    t_env = StreamTableEnvironment.create(flink_env)
    t_env.create_temporary_view("houses", t_env.from_pandas(pd.DataFrame(
        {"city": ["a", "b"], "rooms": [2, 3], "price": [1.0, 2.0]})))
    houses = t_env.from_path("houses")
    with pytest.raises(FeatureTypeError,
                       match=r"feature column 'city' has Flink type STRING.*CAST"):
        torch_train(flink_env, houses, TorchConfig(world_size=2, entry=_empty_job_entry,
                                                   features=["city", "rooms"], label="price"))
    with pytest.raises(FeatureTypeError, match=r"'city' has Flink type STRING"):
        tf_train(flink_env, houses, TFConfig(workers=2, entry=_empty_job_entry,
                                             features=["rooms", "city"], label="price"))
    with pytest.raises(MissingColumnError, match=r"\['nope'\]"):
        torch_train(flink_env, houses, TorchConfig(world_size=1, entry=_empty_job_entry,
                                                   features=["nope"]))
    for predict in (torch_predict, tf_predict):
        with pytest.raises(FeatureTypeError, match=r"predict: feature column 'city'"):
            predict(houses, "/nonexistent-model-dir", features=["rooms", "city"])


def _tf_per_epoch_entry(ctx: Any) -> None:
    import tensorflow as tf

    strategy = ctx.strategy()
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.Adam(0.5), loss="mse")
    losses = []
    for _ in range(ctx.epochs):  # a new dataset per epoch, one Keras epoch each
        history = model.fit(ctx.dataset(64), epochs=1, verbose=0)
        losses.append(float(history.history["loss"][-1]))
    ctx.report(epoch=ctx.epochs - 1, first_loss=losses[0], last_loss=losses[-1],
               epochs_run=len(losses))
    ctx.save_model(model)


def test_tensorflow_decimal_boolean_features_and_a_dataset_per_epoch(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    city = rng.choice(["a", "b"], size=3000)
    rooms = rng.integers(1, 7, size=3000)
    frame = pd.DataFrame({"city": city, "rooms": rooms.astype("int32"),
                          "price": 3.0 * (city == "a") + 2.0 * (rooms > 3) + 0.5 * rooms})
    with execution_mode("process") as env:
        t_env = StreamTableEnvironment.create(env)
        t_env.create_temporary_view("listings", t_env.from_pandas(frame))
        houses = t_env.sql_query(
            "SELECT CASE WHEN city = 'a' THEN 1.0 ELSE 0.0 END AS city_a, rooms > 3 AS roomy,"
            " CAST(rooms AS TINYINT) AS rooms, price FROM listings")
        events = _events(tf_train(env, houses, TFConfig(
            workers=2, entry=_tf_per_epoch_entry, epochs=6, model_dir=str(tmp_path / "m"),
            features=["city_a", "roomy", "rooms"], label="price")))
    report = next(e["metrics"] for e in events if e["kind"] == "metrics" and e["rank"] == 0)
    assert report["epochs_run"] == 6
    assert report["last_loss"] < 0.2 * report["first_loss"], report
    assert ModelStore(tmp_path / "m").latest_number() == 1


def _write_after_ten_rows(ctx: Any) -> None:
    seen = 0
    for batch in ctx.batches():
        seen += batch.num_rows
        if seen >= 10:
            break
    ctx.write({"rows": [seen]})
    ctx.wait_for_stop(timeout=120)  # the stream goes on; no more input arrives


def test_rows_a_node_writes_leave_while_its_stream_is_idle(tmp_path: Path) -> None:
    import threading

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "part-0.csv").write_text("".join(f"{i},{i * 0.5}\n" for i in range(10)))
    with execution_mode("process") as env:
        t_env = StreamTableEnvironment.create(env)
        t_env.execute_sql(f"""
            CREATE TEMPORARY TABLE src (id INT, x DOUBLE) WITH (
              'connector' = 'filesystem', 'path' = '{tmp_path / "in"}', 'format' = 'csv',
              'source.monitor-interval' = '1 s')""")  # unbounded: it watches for new files
        config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=_write_after_ten_rows)
        cluster = flink_dl.ml_cluster(env, config)
        cluster.add_am_role()
        out = cluster.add_role("worker", t_env.from_path("src"),
                               output_schema=pa.schema([("rows", pa.int64())]))
        got: list[Any] = []
        with out.execute_and_collect("idle stream") as rows:
            reader = threading.Thread(target=lambda: got.append(next(rows)), daemon=True)
            reader.start()
            reader.join(120)
        assert got and got[0]["rows"] == 10, "the node's row never left the idle stream"


def test_readme_pipeline_snippet(tmp_path: Path) -> None:
    code = readme_block("Pipelines")
    for path in ("/tmp/pipeline-models", "/tmp/pipelines"):
        assert path in code
    code = code.replace("/tmp/pipeline-models", str(tmp_path / "models")).replace(
        "/tmp/pipelines", str(tmp_path / "pipelines"))
    namespace: dict[str, Any] = {"__name__": "__main__"}
    with execution_mode("process"):
        exec(compile(code, "README Pipelines", "exec"), namespace)
    model = namespace["model"]
    assert model.fit_jobs == 5      # 2 feature jobs, 1 training job, 2 reference jobs
    df = namespace["df"]
    assert model.stages[0].surrogates == [float(np.nanmedian(df["income"]))]
    assert model.stages[3].categories == [["a", "b", "c"]]
    scored = namespace["scored"].to_pandas()
    assert list(scored.columns[-1:]) == ["logit"] and len(scored) == 5000
    accuracy = float(((scored["logit"] > 0) == (scored["bought"] == 1)).mean())
    assert accuracy > 0.85, accuracy
    assert ModelStore(tmp_path / "pipelines").open().files.keys() >= {"pipeline.json",
                                                                      "stage-04/model.ts"}
