"""``flink_dl.online.monitor``: windowed quality and drift per version, against numpy and
scikit-learn on the same rows; ``alerts`` from threshold rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from sklearn.metrics import log_loss, roc_auc_score

from flink_dl.online import Histogram, Rule, alerts, monitor, reference_histograms


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
                      reference=reference, min_drift_rows=1)
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (window_start TIMESTAMP_LTZ(3), "
                      "window_end TIMESTAMP_LTZ(3), version INT, `rows` BIGINT, "
                      "labelled BIGINT, late BIGINT, accuracy DOUBLE, log_loss DOUBLE, auc DOUBLE, "
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


def _samples_table(t_env, directory, frame: pd.DataFrame, columns: str, delay_s: int = 0):
    """A CSV source of ``frame`` with an event-time attribute ``ts`` (WATERMARK ts -
    delay_s), read in the frame's order."""
    directory.mkdir()
    frame.to_csv(directory / "part-0.csv", header=False, index=False,
                 date_format="%Y-%m-%d %H:%M:%S.%f")
    name = directory.name
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name} ({columns}, WATERMARK FOR ts AS ts - "
                      f"INTERVAL '{delay_s}' SECOND) WITH ('connector' = 'filesystem', "
                      f"'path' = '{directory}', 'format' = 'csv', 'csv.null-literal' = '')")
    return t_env.from_path(name)


def test_monitor_counts_rows_behind_the_watermark_as_late_never_drops_them(tmp_path) -> None:
    """Rows that come after the watermark has passed the end of their window: before, the
    window operator dropped them silently (4 of 27 here); now each is counted once, in
    ``late`` of the window open when it came, and ``rows + late`` adds up to the input."""
    seconds = [*(i + 0.5 for i in range(10)),       # window [0, 10): 10 rows
               *(20 + i + 0.5 for i in range(10)),  # [20, 30): the watermark reaches 28.5
               3.5, 5.5, 15.0,                      # late: [0, 10) and [10, 20) have closed
               27.0,                                # behind the watermark, its window open
               40.5,                                # watermark 39.5: [20, 30) closes
               25.0,                                # late: counted in [30, 40)
               50.5]
    late = {20, 21, 22, 25}
    versions = [1 + i % 2 for i in range(20)] + [1, 2, 2, 1, 1, 2, 2]
    frame = pd.DataFrame({
        "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(seconds, unit="s"),
        "version": versions,
        "label": [0 if i in late else 1 for i in range(len(seconds))],  # late: wrong
        "score": 0.9, "x": [float(i % 4) for i in range(len(seconds))]})
    frame["label"] = frame["label"].astype("Int64")
    frame.loc[12, "label"] = pd.NA                                       # one unlabelled
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    samples = _samples_table(t_env, tmp_path / "late_samples", frame,
                             "ts TIMESTAMP(3), version INT, label INT, score DOUBLE, x DOUBLE",
                             delay_s=1)
    reference = {"x": Histogram(edges=[1.5], shares=[0.5, 0.5])}
    got = monitor(samples, label="label", score="score", window=10, version="version",
                  reference=reference, min_drift_rows=1, metrics=False).to_pandas()
    got["start"] = (got["window_start"] - pd.Timestamp("2026-01-01")).dt.total_seconds()
    table = {(int(r.start), int(r.version)): (int(r.rows), int(r.labelled), int(r.late))
             for r in got.itertuples()}
    assert table == {(0, 1): (5, 5, 0), (0, 2): (5, 5, 0),
                     (20, 1): (6, 5, 1),   # + the row at 27.0; one unlabelled
                     (20, 2): (5, 5, 2),
                     (30, 2): (0, 0, 1),   # only a late row: counted, no metrics
                     (40, 1): (1, 1, 0), (50, 2): (1, 1, 0)}
    assert int(got["rows"].sum() + got["late"].sum()) == len(frame)
    assert (got[got["rows"] > 0]["accuracy"] == 1.0).all()   # late rows are not in it
    empty = got[got["start"] == 30].iloc[0]
    assert pd.isna(empty["accuracy"]) and pd.isna(empty["psi_x"]) and pd.isna(empty["ks_x"])
    # by default, drift needs 50 values in a group: these groups are all smaller
    small = monitor(samples, label="label", score="score", window=10, version="version",
                    reference=reference, metrics=False).to_pandas()
    assert len(small) == len(got) and small["psi_x"].isna().all() and small["ks_x"].isna().all()
    assert got[got["rows"] > 0]["psi_x"].notna().all()


def test_monitor_auc_and_ks_against_exact_values(tmp_path) -> None:
    """How far the binned AUC (50 score bins) and the KS at the reference's decile edges are
    from scikit-learn's ``roc_auc_score`` and scipy's ``ks_2samp`` on realistic scores and
    a drifted feature (the figures docs/online-design.md quotes)."""
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(7)
    history = rng.normal(size=20_000)
    rows = 20_000
    z = rng.normal(size=rows)
    label = (z + rng.normal(0, 1.0, rows) > 0).astype(int)
    score = 1 / (1 + np.exp(-1.5 * z))
    x = rng.normal(0.25, 1.1, rows)                   # drifted against the history
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    train = _samples_table(t_env, tmp_path / "history", pd.DataFrame({
        "ts": pd.Timestamp("2026-01-01"), "x": history}), "ts TIMESTAMP(3), x DOUBLE")
    reference = reference_histograms(train, ["x"], bins=10)
    samples = _samples_table(t_env, tmp_path / "scored", pd.DataFrame({
        "ts": pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(rows), unit="ms"),
        "version": 1, "label": label, "score": score, "x": x}),
        "ts TIMESTAMP(3), version INT, label INT, score DOUBLE, x DOUBLE")
    got = monitor(samples, label="label", score="score", window=60, version="version",
                  reference=reference, metrics=False).to_pandas()
    assert len(got) == 1 and got["rows"][0] == rows and got["late"][0] == 0
    auc_error = abs(got["auc"][0] - roc_auc_score(label, score))
    # the bound: half the share of (positive, negative) pairs that share a score bin
    bins = np.minimum((score * 50).astype(int), 49)
    pos, neg = (np.bincount(bins[label == c], minlength=50) for c in (1, 0))
    assert auc_error <= 0.5 * float(pos @ neg) / (pos.sum() * neg.sum())
    assert auc_error < 1e-3, auc_error
    exact_ks = ks_2samp(x, history).statistic
    ks_error = exact_ks - got["ks_x"][0]
    # never above the exact distance; below it by at most the largest bin's share
    assert -1e-12 <= ks_error <= max(reference["x"].shares) + 1 / rows
    assert ks_error < 0.02, ks_error
    print(f"AUC error {auc_error:.2e}, KS error {ks_error:.4f} (exact {exact_ks:.4f})")
