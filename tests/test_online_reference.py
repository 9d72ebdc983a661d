"""Drift against the right reference: a fitted pipeline saves histograms of its served
features (the model stage's inputs, after ``StandardScaler``), ``monitor(...,
reference=pipeline_dir)`` uses them, and a reference in another space is refused.

Raw features uniform on [0, 10]: the README's old form (``reference_histograms`` of the raw
history against samples that carry the scaled features) gave a PSI above 10 in every
window, before the drift too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from flink_dl.errors import ReferenceMismatchError
from flink_dl.online import (
    FTRLLogisticRegression,
    Histogram,
    Reference,
    join_labels,
    monitor,
)
from flink_dl.online.quality import EPSILON
from flink_dl.pipeline import Pipeline, PipelineModel, StandardScaler, predict, publish_model
from flink_dl.pipeline.pipeline import saved_reference
from flink_dl.pipeline.reference import RAW, SERVED

X = ["x1", "x2"]
START = pd.Timestamp("2026-01-01")
DECILES = [i / 10 for i in range(1, 10)]


def csv_table(t_env, directory, frame: pd.DataFrame, columns: str):
    directory.mkdir()
    frame.to_csv(directory / "part-0.csv", header=False, index=False,
                 date_format="%Y-%m-%d %H:%M:%S.%f")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {directory.name} ({columns}, WATERMARK FOR ts "
                      f"AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'filesystem', "
                      f"'path' = '{directory}', 'format' = 'csv')")
    return t_env.from_path(directory.name)


def clicks(rng: np.random.Generator, ids: np.ndarray, drifted: bool) -> pd.DataFrame:
    x = rng.uniform(0, 10, size=(len(ids), 2))
    if drifted:
        x[:, 0] += 4.0                                 # x1 moves to [4, 14]
    return pd.DataFrame({"id": ids, "ts": START + pd.to_timedelta(ids * 10, unit="ms"),
                         "x1": x[:, 0], "x2": x[:, 1],
                         "y": (x[:, 0] + x[:, 1] > 10).astype("int32")})


def psi(values: np.ndarray, histogram: Histogram) -> float:
    shares = np.bincount(np.searchsorted(histogram.edges, values, side="right"),
                         minlength=len(histogram.shares)) / len(values)
    expected = np.array(histogram.shares)
    return float(np.sum((shares - expected)
                        * np.log((shares + EPSILON) / (expected + EPSILON))))


def test_pipeline_saves_the_served_features_reference_and_monitor_uses_it(tmp_path) -> None:
    rng = np.random.default_rng(5)
    history = clicks(rng, np.arange(-4000, 0), drifted=False)
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    model = Pipeline([
        StandardScaler(X),
        FTRLLogisticRegression(X, "y", model_dir=tmp_path / "batch", epochs=1, alpha=0.5),
    ]).fit(csv_table(t_env, tmp_path / "history", history,
                     "id BIGINT, ts TIMESTAMP(3), x1 DOUBLE, x2 DOUBLE, y INT"))
    scaler = model.stages[0]
    served_history = (history[X].to_numpy() - np.array(scaler.mean)) / np.array(scaler.std)
    reference = model.reference
    assert reference is not None and reference.space == SERVED and list(reference) == X
    for index, name in enumerate(X):                   # numpy on the scaled history
        column = served_history[:, index]
        assert reference[name].edges == pytest.approx(np.quantile(column, DECILES), rel=1e-12)
        shares = np.bincount(np.searchsorted(reference[name].edges, column, side="right"),
                             minlength=10) / len(column)
        assert reference[name].shares == pytest.approx(shares, abs=1e-12)
    assert model.fit_jobs == 4                         # scaler, training, 2 for the reference
    model.save(tmp_path / "pipes")
    saved = saved_reference(tmp_path / "pipes")
    assert saved is not None and saved.histograms == reference.histograms
    assert saved.describe() == f"served features of pipeline {(tmp_path / 'pipes').resolve()} " \
                               "(version 1)"
    model.save(tmp_path / "other")

    # serving: 30 s as in training, then x1 drifts; labels 1 s later
    stream = pd.concat([clicks(rng, np.arange(0, 3000), drifted=False),
                        clicks(rng, np.arange(3000, 6000), drifted=True)])
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    requests = csv_table(t_env, tmp_path / "requests", stream.drop(columns=["y"]),
                         "id BIGINT, ts TIMESTAMP(3), x1 DOUBLE, x2 DOUBLE")
    labels = csv_table(t_env, tmp_path / "labels", stream[["id", "ts", "y"]].assign(
        ts=stream["ts"] + pd.Timedelta("1s")), "id BIGINT, ts TIMESTAMP(3), y INT")
    samples = join_labels(predict(requests, tmp_path / "pipes"), labels, key="id", within=5)

    # a reference of the raw input, of a column the samples lack, of another pipeline
    raw = Reference({"x1": Histogram([5.0], [0.5, 0.5])}, RAW)
    with pytest.raises(ReferenceMismatchError, match=r"reference of column\(s\) \['x1'\] is in "
                                                     r"the raw input space.*served features "
                                                     r"of pipeline .*pipes.*transform \['x1'\]"):
        monitor(samples, label="y", score="probability", reference=raw)
    with pytest.raises(ReferenceMismatchError, match=r"\(raw input\) has column\(s\) \['x9'\] "
                                                     "that the samples lack"):
        monitor(samples, label="y", score="probability",
                reference=Reference({"x9": Histogram([0.0], [0.5, 0.5])}, RAW))
    with pytest.raises(ReferenceMismatchError, match=r"served features of pipeline .*other "
                                                     r"\(version 1\), but the samples carry the "
                                                     r"served features of pipeline .*pipes"):
        monitor(samples, label="y", score="probability", reference=tmp_path / "other")

    metrics = monitor(samples, label="y", score="probability", window=30,
                      reference=str(tmp_path / "pipes"), metrics=False).to_pandas()
    metrics = metrics.sort_values("window_start").reset_index(drop=True)
    assert metrics["rows"].tolist() == [3000, 3000] and metrics["late"].sum() == 0
    served = (stream[X].to_numpy() - np.array(scaler.mean)) / np.array(scaler.std)
    for window, part in enumerate((served[:3000], served[3000:])):
        for index, name in enumerate(X):
            assert metrics[f"psi_{name}"][window] == pytest.approx(
                psi(part[:, index], reference[name]), rel=1e-9, abs=1e-12)
    assert metrics["psi_x1"][0] < 0.1 and metrics["psi_x2"][0] < 0.1     # before the drift
    assert metrics["psi_x1"][1] > 1.0 and metrics["psi_x2"][1] < 0.1     # x1 drifted

    # the online learner's versions keep the reference (publish_model)
    publish_model(tmp_path / "pipes", ModelStoreVersion(tmp_path / "batch"))
    again = saved_reference(tmp_path / "pipes")
    assert again.version == 2 and again.histograms == reference.histograms
    assert PipelineModel.load(tmp_path / "pipes").reference.histograms == reference.histograms


def ModelStoreVersion(path):  # noqa: N802 - reads as the version it returns
    from flink_dl.models.store import ModelStore

    return ModelStore(path).open()


def test_reference_records_its_space_and_reads_back(tmp_path) -> None:
    """Without Flink: a saved reference reads back with its space, pipeline and version; a
    pipeline saved without one is refused by name."""
    from flink_dl.online.quality import resolve_reference
    from flink_dl.pipeline.reference import Reference as Ref

    histograms = {"x1": Histogram([-0.5, 0.5], [0.3, 0.4, 0.3])}
    back = Ref.from_json(Ref(histograms, SERVED).to_json(), pipeline="/p", version=3)
    assert back.histograms == histograms and back.space == SERVED
    assert back.describe() == "served features of pipeline /p (version 3)"
    assert Ref(histograms, RAW).describe() == "raw input"
    assert resolve_reference({"x1": histograms["x1"]}).space is None   # given by hand
    with pytest.raises(Exception, match="space must be"):
        Ref(histograms, "scaled")
    bare = PipelineModel([], [])
    bare.save(tmp_path / "bare")
    with pytest.raises(Exception, match=r"the pipeline at .*bare has no saved reference "
                                        r"histograms"):
        resolve_reference(tmp_path / "bare")
