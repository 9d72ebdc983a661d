"""Offline scoring in batch runtime mode gets long Python bundles from ``predict``; a
streaming job (even over a bounded source) keeps Flink's 1 s bundles, which its
environment's later jobs share (issue 16, goal 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StreamTableEnvironment

from flink_dl.inference.operator import (
    BATCH_MODE_BUNDLE_BATCHES,
    BATCH_MODE_BUNDLE_MS,
    BUNDLE_BATCHES,
    TRANSFER_ROWS,
)
from flink_dl.pytorch import TorchModelHandler, predict
from tests.test_pytorch_jobs import _factory, _save_model


def _bundle(t_env: StreamTableEnvironment) -> tuple[str, str]:
    config = t_env.get_config()
    return (config.get("python.fn-execution.bundle.size", ""),
            config.get("python.fn-execution.bundle.time", ""))


def test_batch_mode_predict_has_long_bundles_and_predicts_every_row(tmp_path: Path) -> None:
    model, path = _save_model(tmp_path)
    handler = TorchModelHandler(path, list("abcd"), factory=_factory, batch_size=64)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env, EnvironmentSettings.in_batch_mode())
    frame = pd.DataFrame(np.random.default_rng(3).normal(size=(500, 4)).astype(np.float32),
                         columns=list("abcd"))
    scored = predict(t_env.from_pandas(frame), handler).to_pandas()
    assert _bundle(t_env) == (str(BATCH_MODE_BUNDLE_BATCHES * TRANSFER_ROWS),
                              str(BATCH_MODE_BUNDLE_MS))
    expected = model(torch.from_numpy(frame.to_numpy())).detach().numpy()[:, 0]
    got = scored.sort_values(list("abcd")).reset_index(drop=True)
    want = frame.assign(prediction=expected).sort_values(list("abcd")).reset_index(drop=True)
    np.testing.assert_allclose(got["prediction"], want["prediction"], atol=1e-6)


def test_streaming_predict_keeps_flink_s_bundle_time_and_the_user_s(tmp_path: Path) -> None:
    _, path = _save_model(tmp_path)
    handler = TorchModelHandler(path, list("abcd"), factory=_factory, batch_size=64)
    frame = pd.DataFrame(np.zeros((4, 4), dtype=np.float32), columns=list("abcd"))

    env = StreamExecutionEnvironment.get_execution_environment()
    streaming = StreamTableEnvironment.create(env)
    predict(streaming.from_pandas(frame), handler)  # bounded input, streaming mode
    assert _bundle(streaming) == (str(BUNDLE_BATCHES * TRANSFER_ROWS), "")

    batch = StreamTableEnvironment.create(env, EnvironmentSettings.in_batch_mode())
    batch.get_config().set("python.fn-execution.bundle.time", "250")
    predict(batch.from_pandas(frame), handler)
    assert _bundle(batch) == (str(BATCH_MODE_BUNDLE_BATCHES * TRANSFER_ROWS), "250")
