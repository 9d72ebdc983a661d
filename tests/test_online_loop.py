"""The real-time loop in one job: a batch-trained pipeline serves a click stream, its
predictions meet the labels that arrive later, FTRL keeps learning from them (starting from
the batch model) and publishes pipeline versions, which the serving side swaps in."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

import flink_dl
from examples.online_loop import csv_source, write_csv
from flink_dl.files import count_rows, read_files, write_files
from flink_dl.flink.clusters import cluster_configs_of
from flink_dl.models.store import ModelStore
from flink_dl.online import FTRLLogisticRegression, join_labels
from flink_dl.pipeline import Pipeline, PipelineModel, StandardScaler
from flink_dl.pipeline import predict as serve
from tests.leftovers import wait_clean

X = ["x1", "x2", "x3"]
START = pd.Timestamp("2026-01-01 00:00:00")


def clicks(count: int, seed: int, first_id: int, drifted: bool) -> pd.DataFrame:
    """Clicks follow x1 + x2 > 0; after the drift, x1 - x2 > 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 3))
    y = (x[:, 0] + (-1 if drifted else 1) * x[:, 1] > 0).astype("int32")
    ids = np.arange(first_id, first_id + count)
    return pd.DataFrame({"id": ids, "ts": START + pd.to_timedelta(ids * 10, unit="ms"),
                         "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": y})


def accuracy(model_file: Path, frame: pd.DataFrame, scaler) -> float:
    model = torch.jit.load(str(model_file))
    x = (frame[X].to_numpy() - np.array(scaler.mean)) / np.array(scaler.std)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.astype("float32"))).squeeze(1).numpy()
    return float(((logits > 0).astype(int) == frame["y"].to_numpy()).mean())


def test_online_loop_learns_the_drift_and_serving_swaps_versions(tmp_path) -> None:
    columns = "id BIGINT, ts TIMESTAMP(3), x1 DOUBLE, x2 DOUBLE, x3 DOUBLE"
    history = tmp_path / "history"
    history.mkdir()
    write_csv(clicks(3000, seed=0, first_id=0, drifted=False), history / "part-0.csv")
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    batch = Pipeline([
        StandardScaler(X),
        FTRLLogisticRegression(X, "y", model_dir=tmp_path / "batch", epochs=3, alpha=0.5),
    ]).fit(csv_source(t_env, "history", history, columns + ", y INT", monitor_files=False))
    batch.save(tmp_path / "pipes")
    scaler = batch.stages[0]

    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    requests = csv_source(t_env, "requests", tmp_path / "requests", columns, monitor_files=True)
    labels = csv_source(t_env, "labels", tmp_path / "labels",
                        "id BIGINT, ts TIMESTAMP(3), y INT", monitor_files=True)
    scored = serve(requests, tmp_path / "pipes", poll_interval_s=0.5)
    samples = join_labels(scored, labels, key="id", within=5)
    FTRLLogisticRegression(X, "y", model_dir=tmp_path / "online", alpha=0.5,
                           init_from=ModelStore(tmp_path / "batch").open().path,
                           export_every_steps=8).fit_stream(samples, tmp_path / "pipes")
    served_dir = write_files(scored.select(scored.id, scored.probability,
                                           scored.pipeline_version), tmp_path / "served")
    files = [clicks(400, seed=10 + i, first_id=10_000 + 400 * i, drifted=True)
             for i in range(8)]
    stop = threading.Event()

    def feed() -> None:
        for index, frame in enumerate(files):
            if stop.wait(1.5):
                return
            write_csv(frame.drop(columns=["y"]), tmp_path / "requests" / f"part-{index}.csv")
            write_csv(frame[["id", "ts", "y"]].assign(ts=frame["ts"] + pd.Timedelta("1s")),
                  tmp_path / "labels" / f"part-{index}.csv")

    client = env.execute_async("online loop")
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    online = ModelStore(tmp_path / "online")

    def done() -> bool:
        # every request served, and the learner caught up: the last labels join and train
        # after the last prediction, so wait for the versions (not a fixed pause)
        return count_rows(served_dir) >= 3200 and (online.latest_number() or 0) >= 6

    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and not done():
            time.sleep(0.5)
        time.sleep(1)                                     # versions served to the last rows
    finally:
        stop.set()
        client.cancel()
        flink_dl.cleanup(env)
    # the learner's ML cluster is built on its own wrapper of the environment (from the
    # labelled table): cleanup(env) must find it too, or its node waits on for its input
    # (its node process, work dir, rendezvous files, and the input ring that the cancelled
    # feed operator's thread maps in this client: in loopback mode PyFlink gives a
    # cancelled Python operator no close)
    jobs = [config.job_id for config in cluster_configs_of(env)]
    assert len(jobs) == 1, jobs
    assert wait_clean(jobs[0]) == {}

    got = read_files(served_dir).rename(columns={"pipeline_version": "version"})
    assert len(got) == 3200
    assert online.latest_number() >= 6              # a version every 8 of the 50 steps of 64
    versions = got.sort_values("id")["version"].to_numpy()
    assert versions[0] == 1 and versions[-1] > 1     # serving swapped to the online models
    assert (np.diff(versions) >= 0).mean() > 0.95    # newer versions as the stream goes on
    holdout = clicks(2000, seed=99, first_id=0, drifted=True)
    batch_model = PipelineModel.load(tmp_path / "pipes", version=1).stages[1]
    before = accuracy(Path(batch_model.model_path), holdout, scaler)
    after = accuracy(online.open().file("model.ts"), holdout, scaler)
    assert before < 0.65 and after > 0.85, (before, after)
