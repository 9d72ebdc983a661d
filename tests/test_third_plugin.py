"""The plugin contract is enough for a third framework: ``tests/plugins/numpy_linear``, a
plain-numpy linear regression built on the public contract alone, trains by all-reduce in
a real Flink job (two workers), publishes a version, is served by ``predict`` through its
``ModelHandler`` and works as a pipeline stage, with no edit outside its folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyflink.table import StreamTableEnvironment

from flink_dl.errors import ConfigError
from flink_dl.models import ModelStore
from flink_dl.pipeline import Pipeline, PipelineModel
from tests.plugins.numpy_linear.config import WEIGHTS_FILE, LinearConfig, LinearOptions
from tests.plugins.numpy_linear.entry import least_squares, train
from tests.plugins.numpy_linear.handler import LinearHandler, predict
from tests.plugins.numpy_linear.learner import LinearEstimator

FEATURES = ["a", "b", "c"]
ROWS = 3000
OUT = {"prediction": pa.float64()}


def _data(seed: int = 7) -> pd.DataFrame:
    """Noisy linear data: the least-squares fit of all rows differs from that of any
    share of them (a lost or doubled batch shows in the weights)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(ROWS, 3)), columns=FEATURES)
    frame["y"] = (1.5 * frame.a - 2.0 * frame.b + 0.25 * frame.c + 3.0
                  + rng.normal(scale=0.5, size=ROWS))
    frame.insert(0, "id", np.arange(ROWS, dtype=np.int64))
    return frame


def _lstsq(frame: pd.DataFrame) -> np.ndarray:
    design = np.hstack([frame[FEATURES].to_numpy(), np.ones((len(frame), 1))])
    return np.linalg.lstsq(design, frame["y"].to_numpy(), rcond=None)[0]


def _config(model_dir: Path, **settings: object) -> LinearConfig:
    return LinearConfig(workers=2, entry=least_squares, features=FEATURES, label="y",
                        model_dir=str(model_dir), timeouts={"registration": 120},
                        **settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------- no Flink job
def test_the_plugins_settings_are_typed_and_checked_at_build_time(tmp_path: Path) -> None:
    config = _config(tmp_path, ridge=0.5)
    config.validate()
    options = config.training_options(None)
    assert isinstance(options, LinearOptions)
    assert (options.ridge, options.features, options.label) == (0.5, tuple(FEATURES), "y")
    assert options.timeouts.registration == 120 and options.model_dir == str(tmp_path)
    with pytest.raises(ConfigError, match="workers must be"):
        LinearConfig(workers=0, entry=least_squares).validate()
    with pytest.raises(ConfigError, match="numpy-linear plugin does not implement "
                                          "exactly-once"):
        _config(tmp_path, exactly_once=True).validate()


def test_predict_names_an_unknown_option(tmp_path: Path) -> None:
    np.save(tmp_path / WEIGHTS_FILE, np.array([1.0, 2.0, 3.0, 4.0]))
    handler = LinearHandler(tmp_path / WEIGHTS_FILE, FEATURES, outputs=OUT)
    out = handler.run(handler.load(None), {"a": np.array([1.0]), "b": np.array([1.0]),
                                           "c": np.array([2.0])})
    assert out["prediction"].tolist() == [1.0 + 2.0 + 6.0 + 4.0]
    with pytest.raises(ConfigError, match=r"predict: .*'factory'"):
        predict(None, tmp_path / WEIGHTS_FILE, FEATURES, factory=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"predict: max_latency_ms must be a positive"):
        predict(None, tmp_path / WEIGHTS_FILE, FEATURES, max_latency_ms=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Flink jobs
def test_trains_by_allreduce_in_a_flink_job_and_predict_serves_it(process_env,
                                                                   tmp_path: Path) -> None:
    data = _data()
    t_env = StreamTableEnvironment.create(process_env)
    events = train(process_env, t_env.from_pandas(data), _config(tmp_path / "models"))
    with events.execute_and_collect("numpy-linear") as results:
        rows = [row.as_dict() for row in results]

    metrics = [json.loads(e["metrics"]) for e in rows if e["kind"] == "metrics"]
    assert sorted(e["rank"] for e in rows if e["kind"] == "metrics") == [0, 1]
    assert all(m["rows"] > 0 for m in metrics), "both workers get a share"
    assert sum(m["rows"] for m in metrics) == ROWS
    assert {m["rows_total"] for m in metrics} == {ROWS}
    models = [e for e in rows if e["kind"] == "model"]
    assert [m["version"] for m in models] == [1]

    weights = np.load(ModelStore(tmp_path / "models").open().file(WEIGHTS_FILE))
    expected = _lstsq(data)
    np.testing.assert_allclose(weights, expected, rtol=1e-9, atol=1e-9)
    share = _lstsq(data.iloc[: ROWS // 2])  # what one worker alone would have learned
    assert not np.allclose(weights, share, rtol=1e-3, atol=1e-3)

    scored = predict(t_env.from_pandas(data), tmp_path / "models", FEATURES,
                     outputs=OUT, max_latency_ms=200).to_pandas().sort_values("id")
    want = data[FEATURES].to_numpy() @ expected[:-1] + expected[-1]
    np.testing.assert_allclose(scored["prediction"].to_numpy(), want, rtol=1e-9, atol=1e-9)
    assert set(scored["model_version"]) == {1}


def test_is_a_pipeline_stage_that_saves_and_loads_by_kind(process_env, tmp_path: Path) -> None:
    data = _data(seed=11)
    t_env = StreamTableEnvironment.create(process_env)
    table = t_env.from_pandas(data)
    estimator = LinearEstimator(_config(tmp_path / "models", ridge=0.0), FEATURES, "y",
                                outputs=OUT, batch_invariant=False)
    model = Pipeline([estimator]).fit(table)
    model.save(tmp_path / "pipes")
    loaded = PipelineModel.load(tmp_path / "pipes")
    assert type(loaded.stages[-1]).__name__ == "LinearModel"
    scored = loaded.transform(table).to_pandas().sort_values("id")
    expected = _lstsq(data)
    want = data[FEATURES].to_numpy() @ expected[:-1] + expected[-1]
    np.testing.assert_allclose(scored["prediction"].to_numpy(), want, rtol=1e-9, atol=1e-9)
