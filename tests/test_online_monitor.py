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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_monitor_reports_version_quality_and_drift_as_flink_metrics() -> None:
    """While a monitor job runs, Flink's REST API shows its gauges: the model version in
    use, the window's rows, accuracy/AUC (every score right: 1.0) and drift (ppm)."""
    import json
    import time
    import urllib.request

    from pyflink.common import Configuration

    from flink_dl.online import Histogram
    from flink_dl.online.gauges import GAUGES, METRIC_GROUP

    port = _free_port()
    conf = Configuration()
    conf.set_string("rest.port", str(port))
    conf.set_string("metrics.fetcher.update-interval", "500")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    # 20 rows/s of event time 100 ms apart: a 1 s window every 0.5 s. The sequence starts at
    # 0 so that the first window ([0, 1 s): v = 0..9) is as full as the others; from 1 the
    # first held 9 rows, which a fast start-up read (CI: `assert 9 == 10`)
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE live (v BIGINT, ts AS TO_TIMESTAMP_LTZ(v * 100, 3), "
        "label AS CAST(v % 2 AS INT), score AS CASE WHEN v % 2 = 1 THEN 0.9E0 ELSE 0.2E0 END, "
        "pipeline_version AS 3, x AS CAST(v % 10 AS DOUBLE), WATERMARK FOR ts AS ts) WITH ("
        "'connector' = 'datagen', 'rows-per-second' = '20', 'fields.v.kind' = 'sequence', "
        "'fields.v.start' = '0', 'fields.v.end' = '2000')")
    reference = {"x": Histogram(edges=[4.5], shares=[0.9, 0.1])}  # the stream: 0.5 / 0.5
    metrics = monitor(t_env.from_path("live"), label="label", score="score", window=1,
                      reference=reference)
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (window_start TIMESTAMP_LTZ(3), "
                      "window_end TIMESTAMP_LTZ(3), version INT, `rows` BIGINT, "
                      "labelled BIGINT, accuracy DOUBLE, log_loss DOUBLE, auc DOUBLE, "
                      "psi_x DOUBLE, ks_x DOUBLE) WITH ('connector' = 'blackhole')")
    job = metrics.execute_insert("sink").get_job_client()
    base = f"http://127.0.0.1:{port}"
    found: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and found.get("model_version") != 3:
            time.sleep(1)
            try:
                jid = str(job.get_job_id())
                vertices = json.load(urllib.request.urlopen(f"{base}/jobs/{jid}"))["vertices"]
                for vertex in vertices:
                    url = f"{base}/jobs/{jid}/vertices/{vertex['id']}/metrics"
                    ids = [m["id"] for m in json.load(urllib.request.urlopen(url))
                           if f".{METRIC_GROUP}." in m["id"]]
                    if ids:
                        values = json.load(urllib.request.urlopen(f"{url}?get={','.join(ids)}"))
                        found = {v["id"].rsplit(".", 1)[1]: int(v["value"]) for v in values}
            except OSError:
                continue  # the REST endpoint is still starting
    finally:
        job.cancel()
    assert set(found) == set(GAUGES), found
    assert found["model_version"] == 3
    assert found["window_rows"] == 10
    assert found["accuracy_ppm"] == 1_000_000 and found["auc_ppm"] == 1_000_000
    psi = (0.5 - 0.9) * np.log((0.5 + 1e-6) / (0.9 + 1e-6)) \
        + (0.5 - 0.1) * np.log((0.5 + 1e-6) / (0.1 + 1e-6))
    assert found["drift_psi_ppm"] == pytest.approx(psi * 1e6, abs=2)
    assert found["drift_ks_ppm"] == 400_000
