"""``max_latency_ms``: the one latency knob of streaming predict (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from flink_dl.errors import ConfigError
from flink_dl.pytorch import TorchModelHandler, predict
from tests.test_pytorch_jobs import _factory, _linear_table, _save_model


def test_budget_sets_buffer_timeout_bundles_and_batches(tmp_path: Path) -> None:
    """40 ms: network buffers flush after 4 ms, a bundle (and its Arrow batch) ends at one
    model batch or after 10 ms; the predictions are those of the model."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    model, path = _save_model(tmp_path)
    frame, table = _linear_table(t_env, 300)
    handler = TorchModelHandler(path, list("abcd"), factory=_factory, batch_size=64)
    result = predict(table, handler, max_latency_ms=40)
    config = t_env.get_config()
    assert config.get("python.fn-execution.bundle.time", "") == "10"
    assert config.get("python.fn-execution.bundle.size", "") == "64"
    assert config.get("python.fn-execution.arrow.batch.size", "") == "64"
    assert config.get("execution.buffer-timeout.interval", "") == "4 ms"
    assert t_env._j_tenv.execEnv().getBufferTimeout() == 4
    with result.execute().collect() as rows:
        got = {r[0]: r[6] for r in rows}
    expected = model(torch.from_numpy(frame[list("abcd")].to_numpy())).detach().numpy()[:, 0]
    np.testing.assert_allclose([got[i] for i in range(len(frame))], expected, atol=1e-6)


@pytest.mark.parametrize("budget", [0, -5, float("nan"), float("inf"), True, "50"])
def test_a_bad_budget_is_a_config_error(budget: object, tmp_path: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    _, path = _save_model(tmp_path)
    _, table = _linear_table(t_env, 10)
    with pytest.raises(ConfigError, match=r"predict: max_latency_ms must be a positive number"):
        predict(table, path, features=list("abcd"), factory=_factory, max_latency_ms=budget)


def test_pipeline_predict_takes_the_budget(tmp_path: Path) -> None:
    """``flink_dl.pipeline.predict(..., max_latency_ms=)``: feature stages alone (no model
    stage) under a budget give the transformed rows and set the job's bundles."""
    import pandas as pd

    from flink_dl.pipeline import Pipeline, StandardScaler
    from flink_dl.pipeline import predict as pipeline_predict

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    data = pd.DataFrame({"x": [1.0, 2.0, 3.0, 6.0]})
    Pipeline([StandardScaler(["x"])]).fit(t_env.from_pandas(data)).save(tmp_path / "pipes")
    served = pipeline_predict(t_env.from_pandas(data), tmp_path / "pipes", max_latency_ms=80)
    assert t_env.get_config().get("python.fn-execution.bundle.time", "") == "20"
    out = served.to_pandas()
    expected = (data["x"] - data["x"].mean()) / data["x"].std(ddof=0)
    np.testing.assert_allclose(out["x"], expected, atol=1e-12)
    assert out["pipeline_version"].tolist() == [1, 1, 1, 1]
