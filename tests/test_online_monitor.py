"""``flink_dl.online.monitor``: windowed quality and drift per version, against numpy and
scikit-learn on the same rows; ``alerts`` from threshold rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from sklearn.metrics import log_loss, roc_auc_score

from flink_dl.online import Rule, alerts, monitor, reference_histograms


def test_monitor_quality_and_drift_per_window_and_version(tmp_path) -> None:
    rng = np.random.default_rng(0)
    rows = 2000
    label = rng.integers(0, 2, rows)
    # scores at bin centres (1/50 wide bins): the binned AUC is the exact AUC
    score = np.clip(np.round((0.35 * label + rng.uniform(0, 0.65, rows)) * 50 - 0.5) + 0.5,
                    0.5, 49.5) / 50
    x = rng.normal(size=rows)
    x[1000:] += 1.0                                           # drift in the second window
    frame = pd.DataFrame({
        "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(rows) * 30, unit="ms"),
        "version": np.where(np.arange(rows) % 2 == 0, 1, 2), "x": x, "score": score,
        "label": label})
    directory = tmp_path / "samples"
    directory.mkdir()
    frame.to_csv(directory / "part-0.csv", header=False, index=False,
                 date_format="%Y-%m-%d %H:%M:%S.%f")
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE samples (ts TIMESTAMP(3), version INT, x DOUBLE, score DOUBLE, "
        "label INT, WATERMARK FOR ts AS ts) WITH ('connector' = 'filesystem', "
        f"'path' = '{directory}', 'format' = 'csv')")
    samples = t_env.from_path("samples")
    t_env.execute_sql("CREATE TEMPORARY VIEW training AS SELECT x FROM samples WHERE "
                      "ts < TIMESTAMP '2026-01-01 00:00:30'")
    reference = reference_histograms(t_env.from_path("training"), ["x"], bins=5)
    assert len(reference["x"].edges) == 4 and sum(reference["x"].shares) == pytest.approx(1.0)

    metrics = monitor(samples, label="label", score="score", window=30, version="version",
                      reference=reference).to_pandas()
    assert len(metrics) == 4                                  # 2 windows x 2 versions
    for _, row in metrics.iterrows():
        start = (row["window_start"] - pd.Timestamp("2026-01-01")).total_seconds()
        part = frame.iloc[int(start / 0.03):int(start / 0.03) + 1000]
        part = part[part["version"] == row["version"]]
        assert row["rows"] == row["labelled"] == len(part)
        predicted = (part["score"] >= 0.5).astype(int)
        assert row["accuracy"] == pytest.approx((predicted == part["label"]).mean(), abs=1e-12)
        assert row["log_loss"] == pytest.approx(log_loss(part["label"], part["score"]),
                                                rel=1e-9)
        assert row["auc"] == pytest.approx(roc_auc_score(part["label"], part["score"]),
                                           abs=1e-9)
        edges = reference["x"].edges
        shares = np.bincount(np.searchsorted(edges, part["x"], side="right"),
                             minlength=len(edges) + 1) / len(part)
        expected = np.array(reference["x"].shares)
        psi = np.sum((shares - expected) * np.log((shares + 1e-6) / (expected + 1e-6)))
        assert row["psi_x"] == pytest.approx(psi, rel=1e-9)
        ks = np.max(np.abs(np.cumsum(shares)[:-1] - np.cumsum(expected)[:-1]))
        assert row["ks_x"] == pytest.approx(ks, abs=1e-12)
    drifted = metrics.sort_values("window_start")["psi_x"].to_numpy()
    assert drifted[:2].max() < 0.05 < 0.2 < drifted[2:].min()

    fired = alerts(monitor(samples, label="label", score="score", window=30,
                           version="version", reference=reference),
                   [Rule("psi_x", ">", 0.2)]).to_pandas()
    assert sorted(fired["version"]) == [1, 2] and set(fired["rule"]) == {"psi_x > 0.2"}
