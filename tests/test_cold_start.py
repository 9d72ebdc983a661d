"""Cold start: a pipeline that has learned nothing serves its prior and learns from the
first labelled row (``Pipeline.untrained``), as River users start."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

import flink_dl
from examples.online_loop import csv_source, write_csv
from flink_dl.errors import ConfigError
from flink_dl.files import count_rows, read_files, write_files
from flink_dl.models.store import ModelStore
from flink_dl.online import (
    FTRLLogisticRegression,
    OnlineStandardScaler,
    join_labels,
    monitor,
)
from flink_dl.pipeline import Pipeline, PipelineModel, StandardScaler, predict
from flink_dl.pipeline.stages.scalers import StandardScalerModel
from flink_dl.pytorch import TorchConfig, TorchEstimator

X = ["x1", "x2", "x3"]
START = pd.Timestamp("2026-01-01 00:00:00")
RATE = 100  # rows per second of event time
COLUMNS = "id BIGINT, ts TIMESTAMP(3), x1 DOUBLE, x2 DOUBLE, x3 DOUBLE"


def clicks(ids: np.ndarray, seed: int) -> pd.DataFrame:
    """Features on their own scales (means 5, -3, 0; stds 2, 0.5, 1); a click when the
    standardised x1 + x2 > 0, with some noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(len(ids), 3))
    x = z * np.array([2.0, 0.5, 1.0]) + np.array([5.0, -3.0, 0.0])
    y = (z[:, 0] + z[:, 1] + rng.normal(0, 0.3, len(ids)) > 0).astype("int32")
    frame = pd.DataFrame(x, columns=X)
    frame.insert(0, "ts", START + pd.to_timedelta(ids / RATE, unit="s"))
    frame.insert(0, "id", ids)
    frame["y"] = y
    return frame


def test_untrained_pipeline_serves_the_prior_then_learns_from_the_first_labels(
        tmp_path: Path) -> None:
    """The README's cold form on a stream fed over 6 s: version 1 is untrained (scaler
    mean 0 / std 1, FTRL zero weights, bias logit(prior)); rows served before any model
    version learned are flagged ``from_prior`` and get exactly the prior; later rows come
    from learned versions, accurate on the last third; the scaler learned the stream's
    mean and std."""
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.source.idle-timeout", "1 s")
    requests = csv_source(t_env, "requests", tmp_path / "requests", COLUMNS, True, 2.0)
    labels = csv_source(t_env, "labels", tmp_path / "labels",
                        "id BIGINT, ts TIMESTAMP(3), y INT", True, 2.0)
    pipes, online = tmp_path / "pipes", tmp_path / "online"
    scaler = OnlineStandardScaler(X)
    learner = FTRLLogisticRegression(X, "y", model_dir=online, prior=0.2)
    untrained = Pipeline([scaler, learner]).untrained(requests)
    untrained.save(pipes)

    saved = PipelineModel.load(pipes)
    assert saved.untrained and saved.version.version == 1
    assert saved.stages[0].mean == [0.0] * 3 and saved.stages[0].std == [1.0] * 3
    start_model = torch.jit.load(saved.stages[1].model_path)
    assert float(start_model.bias.detach()[0]) == pytest.approx(math.log(0.2 / 0.8), abs=1e-6)
    assert torch.count_nonzero(start_model.weight) == 0

    scored = predict(requests, pipes)
    assert "from_prior" in scored.get_schema().get_field_names()
    samples = join_labels(scored, labels, key="id", within=10)
    with pytest.raises(ConfigError, match="is an untrained start"):  # nothing to drift from
        monitor(samples, label="y", score="probability", window=5, reference=pipes)
    scaler.fit_stream(requests, pipes)
    learner.fit_stream(samples, pipes)
    served_dir = write_files(scored.select(scored.id, scored.probability,
                                           scored.pipeline_version, scored.from_prior),
                             tmp_path / "served")
    total, per_file = 1200, 50
    frames = [clicks(np.arange(a, a + per_file), seed=a) for a in range(0, total, per_file)]
    stop = threading.Event()

    def feed() -> None:
        for number, frame in enumerate(frames):
            write_csv(frame.drop(columns=["y"]), tmp_path / "requests" / f"p{number:03d}.csv")
            write_csv(frame[["id", "ts", "y"]], tmp_path / "labels" / f"p{number:03d}.csv")
            while number == 0 and count_rows(served_dir) == 0:  # the job has started
                if stop.wait(0.1):
                    return
            if stop.wait(0.25):
                return

    client = env.execute_async("cold start")
    threading.Thread(target=feed, daemon=True).start()
    deadline = time.monotonic() + 240
    try:
        while count_rows(served_dir) < total and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(2)  # the last samples reach the learner
    finally:
        stop.set()
        client.cancel().result()
        flink_dl.cleanup(env)

    served = read_files(served_dir).merge(pd.concat(frames)[["id", "y"]], on="id")
    assert len(served) == total
    prior_rows = served[served["from_prior"]]
    learned_rows = served[~served["from_prior"]]
    assert len(prior_rows) >= per_file  # the first file, at least, before any learning
    assert np.allclose(prior_rows["probability"], 0.2, atol=1e-6)
    assert len(learned_rows) >= total / 2
    assert (learned_rows["pipeline_version"] > 1).all()
    last_third = served[served["id"] >= 2 * total // 3]
    accuracy = ((last_third["probability"] >= 0.5) == (last_third["y"] == 1)).mean()
    assert accuracy >= 0.85, accuracy
    assert ModelStore(online).open().metrics["samples"] >= total / 2

    newest = PipelineModel.load(pipes)
    assert not newest.untrained
    stats = newest.stages[0]
    assert isinstance(stats, StandardScalerModel)
    assert stats.mean == pytest.approx([5.0, -3.0, 0.0], abs=0.3)
    assert stats.std == pytest.approx([2.0, 0.5, 1.0], rel=0.15)


def test_cold_start_refuses_what_cannot_start_untrained(flink_env, tmp_path: Path) -> None:
    """A stage that learns only from a batch fit, a TorchEstimator without a factory and a
    prior outside (0, 1) are refused, naming the stage or the setting; nothing is saved."""
    t_env = StreamTableEnvironment.create(flink_env)
    table = t_env.from_pandas(clicks(np.arange(10), seed=1)[X])
    learner = FTRLLogisticRegression(X, "y", model_dir=tmp_path / "m")
    with pytest.raises(ConfigError, match="StandardScaler cannot start untrained"):
        Pipeline([StandardScaler(X), learner]).untrained(table)
    config = TorchConfig(world_size=1, entry="tests.entries:record", model_dir=str(tmp_path / "t"))
    with pytest.raises(ConfigError, match="TorchEstimator cannot start untrained: give it a "
                                          "factory"):
        Pipeline([TorchEstimator(config, X, "y")]).untrained(table)
    for prior in (0.0, 1.0, 1.5, "0.5", True):
        with pytest.raises(ConfigError, match="prior must be a probability"):
            FTRLLogisticRegression(X, "y", model_dir=tmp_path / "m", prior=prior)
    with pytest.raises(ConfigError, match=r"column\(s\) \['x9'\]"):
        Pipeline([OnlineStandardScaler(["x9"])]).untrained(table)
    assert not (tmp_path / "m").exists() and not (tmp_path / "t").exists()


class Doubler(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)
        torch.nn.init.constant_(self.linear.weight, 2.0)
        torch.nn.init.constant_(self.linear.bias, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_a_torch_estimator_with_a_factory_starts_from_its_module(tmp_path: Path) -> None:
    """``TorchEstimator(..., factory=)`` starts untrained from ``factory()``'s weights:
    the saved pipeline predicts what the module computes, in a Flink job."""
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    frame = clicks(np.arange(40), seed=3)[X]
    table = t_env.from_pandas(frame)
    config = TorchConfig(world_size=1, entry="tests.entries:record",
                         model_dir=str(tmp_path / "models"))
    estimator = TorchEstimator(config, X, "y", factory=Doubler,
                               outputs={"score": pa.float32()})
    Pipeline([estimator]).untrained(table).save(tmp_path / "pipes")
    version = ModelStore(tmp_path / "models").open()
    assert version.metrics == {"samples": 0, "untrained": True}
    out = PipelineModel.load(tmp_path / "pipes").transform(table).to_pandas()
    expected = frame[X].to_numpy().sum(axis=1) * 2.0 + 0.5
    assert np.allclose(np.sort(out["score"].to_numpy()), np.sort(expected), rtol=1e-5)
