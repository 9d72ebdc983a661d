"""The real-time learning loop, one command: serve, join delayed labels, learn online, monitor.

A synthetic click stream (2,000 rows per second of event time, numpy seed) follows one
hyperplane for ``drift_at_s`` seconds and then an abrupt other one (a concept drift at a
known time). A pipeline (``StandardScaler`` + ``FTRLLogisticRegression``) is batch-trained on
pre-drift history and saved. One streaming job then:

1. serves the saved pipeline on the requests (``flink_dl.pipeline.predict``: features and
   model of one version per row, swapped in as new versions land);
2. joins the predictions with the labels, which arrive 2 s of event time later
   (``flink_dl.online.join_labels``): training samples with the features the model saw;
3. keeps training FTRL on them, starting from the batch model, publishing a pipeline
   version every ``export_every_steps`` steps (``FTRLLogisticRegression.fit_stream``);
4. monitors accuracy, log-loss, AUC and drift per version and window
   (``flink_dl.online.monitor``), the drift against the histograms of the served features
   (after ``StandardScaler``) that the pipeline saved when it was fitted; late rows are
   counted in ``late``.

The files are written ``speedup`` times faster than event time. Afterwards the script
prints a table per window, the static batch model's and the online loop's accuracy, the
recovery time after the drift, and writes a PNG plot.

Run: ``python examples/online_loop.py [work_dir]`` (embedded Flink, about two minutes).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

import flink_dl
from flink_dl.files import count_rows, read_files, write_files
from flink_dl.models.store import ModelStore
from flink_dl.online import FTRLLogisticRegression, join_labels, monitor
from flink_dl.pipeline import Pipeline, PipelineModel, StandardScaler
from flink_dl.pipeline import predict as serve

log = logging.getLogger("online-loop")

X = ["x1", "x2", "x3", "x4"]
START = pd.Timestamp("2026-01-01 00:00:00")
BEFORE = np.array([1.0, 1.0, 0.5, 0.0])      # the hyperplane before the drift
AFTER = np.array([1.0, -1.0, 0.0, 0.7])      # and after it
REQUEST_COLUMNS = "id BIGINT, ts TIMESTAMP(3), x1 DOUBLE, x2 DOUBLE, x3 DOUBLE, x4 DOUBLE"


@dataclass
class Settings:
    rate: int = 2000              # rows per second of event time
    drift_at_s: float = 60.0
    duration_s: float = 150.0
    label_delay_s: float = 2.0
    # Event-time disorder the watermark allows: the file source reads the files found in
    # one 500 ms scan in any order, and 500 ms is 2.5 event seconds at 5x
    disorder_s: float = 5.0
    speedup: float = 5.0          # event seconds per wall second while feeding
    window_s: float = 5.0
    history_rows: int = 20_000
    export_every_steps: int = 20  # a version every 20 x 64 samples


def clicks(ids: np.ndarray, rate: int, drift_at_s: float, seed: int) -> pd.DataFrame:
    """Rows ``ids`` of the stream: event time ``id / rate`` s, label from the hyperplane of
    that time plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(ids), len(X)))
    seconds = ids / rate
    weights = np.where((seconds >= drift_at_s)[:, None], AFTER, BEFORE)
    y = ((x * weights).sum(axis=1) + rng.normal(0, 0.3, len(ids)) > 0).astype("int32")
    frame = pd.DataFrame(x, columns=X)
    frame.insert(0, "ts", START + pd.to_timedelta(seconds, unit="s"))
    frame.insert(0, "id", ids)
    frame["y"] = y
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    hidden = path.with_name("." + path.name)
    frame.to_csv(hidden, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S.%f")
    hidden.rename(path)


def csv_source(t_env: StreamTableEnvironment, name: str, directory: Path, columns: str,
               monitor_files: bool, disorder_s: float = 1.0) -> Any:
    directory.mkdir(parents=True, exist_ok=True)
    options = f"'connector' = 'filesystem', 'path' = '{directory}', 'format' = 'csv'"
    if monitor_files:
        options += ", 'source.monitor-interval' = '500 ms'"
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name} ({columns}, WATERMARK FOR ts AS ts - "
                      f"INTERVAL '{disorder_s:g}' SECOND) WITH ({options})")
    return t_env.from_path(name)


def _job_ended(client: Any) -> bool:
    """Whether the job has reached a terminal state (also when its mini-cluster is gone)."""
    try:
        return bool(client.get_job_status().result().is_globally_terminal_state())
    except Exception:  # no status: the job and its mini-cluster are gone
        return True


def train_batch(work: Path, s: Settings) -> PipelineModel:
    """Batch-train the pipeline on pre-drift history and save it (version 1)."""
    history = work / "history"
    history.mkdir(parents=True, exist_ok=True)
    ids = np.arange(-s.history_rows, 0)          # before the stream starts: no drift
    write_csv(clicks(ids, s.rate, s.drift_at_s, seed=1), history / "part-0.csv")
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    table = csv_source(t_env, "history", history, REQUEST_COLUMNS + ", y INT", False)
    model = Pipeline([
        StandardScaler(X),
        FTRLLogisticRegression(X, "y", model_dir=work / "batch-models", epochs=3, alpha=0.5,
                               batch_size=64),
    ]).fit(table)
    # saved with the histograms of the served features (after StandardScaler), which
    # monitor(..., reference=pipeline_dir) measures drift against
    model.save(work / "pipelines")
    return model


def run_loop(work: Path, batch: PipelineModel, s: Settings) -> dict[str, Any]:
    """The streaming job: serve, join labels, learn online, monitor; returns its outputs."""
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    # A source subtask without files would hold the watermark back (no window would
    # close): idle for a second, it no longer counts. The learner's input ends only when
    # its sources do, not when they idle.
    t_env.get_config().set("table.exec.source.idle-timeout", "1 s")
    requests = csv_source(t_env, "requests", work / "requests", REQUEST_COLUMNS, True,
                          s.disorder_s)
    labels = csv_source(t_env, "labels", work / "labels", "id BIGINT, ts TIMESTAMP(3), y INT",
                        True, s.disorder_s)
    scored = serve(requests, work / "pipelines", poll_interval_s=0.5)
    samples = join_labels(scored, labels, key="id", within=s.label_delay_s + 5)
    # 10,000 rows/s at 5x: batches of 64 rows keep up (batch_size=1, the default, learns
    # each row at once but trains ~2,000 samples/s here: docs/benchmarks.md)
    FTRLLogisticRegression(X, "y", model_dir=work / "online-models", alpha=0.5, batch_size=64,
                           init_from=ModelStore(work / "batch-models").open().path,
                           export_every_steps=s.export_every_steps
                           ).fit_stream(samples, work / "pipelines")
    # rows out of the running job: files that grow as it goes (flink_dl.files)
    served_dir = write_files(scored.select(scored.id, scored.probability,
                                           scored.pipeline_version), work / "served")
    metrics = monitor(samples, label="y", score="probability", window=s.window_s,
                      reference=work / "pipelines")
    metrics_dir = write_files(metrics, work / "metrics")

    total = int(s.duration_s * s.rate)
    per_file = s.rate                             # one event-time second per file
    stop = threading.Event()

    def feed() -> None:
        for start in range(0, total, per_file):
            ids = np.arange(start, min(start + per_file, total))
            frame = clicks(ids, s.rate, s.drift_at_s, seed=1000 + start // per_file)
            write_csv(frame.drop(columns=["y"]), work / "requests" / f"part-{start}.csv")
            later = frame[["id", "ts", "y"]].assign(
                ts=frame["ts"] + pd.Timedelta(seconds=s.label_delay_s))
            write_csv(later, work / "labels" / f"part-{start}.csv")
            # the first second's rows go out alone, the rest once they are served: files
            # piled up while the job starts would be read in any order, far behind the
            # watermark, and the interval join drops rows that late
            while start == 0 and count_rows(served_dir) == 0:
                if stop.wait(0.2):
                    return
            if stop.wait(per_file / s.rate / s.speedup):
                return

    started = time.monotonic()
    client = env.execute_async("flink-dl online loop")
    threading.Thread(target=feed, daemon=True).start()
    deadline = started + s.duration_s / s.speedup + 240
    ended = False
    try:
        while count_rows(served_dir) < total and time.monotonic() < deadline \
                and not (ended := _job_ended(client)):
            time.sleep(0.5)
        wall = time.monotonic() - started
        if ended:  # an unbounded job only ends by failing: say why
            client.get_job_execution_result().result()
            raise RuntimeError("the online loop's job ended before serving every request")
        time.sleep(3)
    finally:
        stop.set()
        if not ended:
            client.cancel()
        flink_dl.cleanup(env)
    served = read_files(served_dir).rename(columns={"pipeline_version": "version"})
    windows = read_files(metrics_dir)
    online = ModelStore(work / "online-models")
    trained = int(online.open().metrics.get("samples", 0)) if online.latest_number() else 0
    return {"served": served, "monitor": windows, "wall_s": wall, "trained": trained,
            "versions": ModelStore(work / "pipelines").latest_number()}


def static_scores(batch: PipelineModel, frame: pd.DataFrame) -> np.ndarray:
    """The batch model's probabilities on ``frame`` (what serving it unchanged gives)."""
    import torch

    scaler, learner = batch.stages
    x = (frame[X].to_numpy() - np.array(scaler.mean)) / np.array(scaler.std)
    model = torch.jit.load(learner.model_path)
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x.astype("float32")))).numpy()[:, 0]


def evaluate(batch: PipelineModel, served: pd.DataFrame, s: Settings) -> dict[str, Any]:
    """Windowed accuracy of the online loop and of the static batch model, the recovery
    time after the drift, and the gap of the static model."""
    total = int(s.duration_s * s.rate)
    truth = pd.concat([clicks(np.arange(a, min(a + s.rate, total)), s.rate, s.drift_at_s,
                              seed=1000 + a // s.rate) for a in range(0, total, s.rate)])
    rows = truth.merge(served, on="id")
    rows["static"] = static_scores(batch, rows)
    rows["second"] = rows["id"] / s.rate
    rows["window"] = (rows["second"] // s.window_s) * s.window_s
    table = rows.groupby("window").apply(lambda w: pd.Series({
        "rows": len(w),
        "online_accuracy": float(((w["probability"] > 0.5) == (w["y"] == 1)).mean()),
        "static_accuracy": float(((w["static"] > 0.5) == (w["y"] == 1)).mean()),
        "version": int(w["version"].max())}), include_groups=False).reset_index()
    pre = table[(table["window"] >= 10) & (table["window"] + s.window_s <= s.drift_at_s)]
    level = float(pre["online_accuracy"].mean())
    post = table[table["window"] >= s.drift_at_s]
    recovered = post[post["online_accuracy"] >= level - 0.02]
    recovery_s = float(recovered["window"].iloc[0] + s.window_s - s.drift_at_s) \
        if len(recovered) else None
    after = post[post["window"] >= s.drift_at_s + (recovery_s or 0)]
    return {"table": table, "pre_drift_accuracy": level,
            "online_after": float(after["online_accuracy"].mean()),
            "static_after": float(after["static_accuracy"].mean()),
            "recovery_s": recovery_s}


def plot(table: pd.DataFrame, s: Settings, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    centre = table["window"] + s.window_s / 2
    ax.plot(centre, table["static_accuracy"], label="static batch model", marker=".")
    ax.plot(centre, table["online_accuracy"], label="online loop (FTRL, warm start)",
            marker=".")
    ax.axvline(s.drift_at_s, color="grey", linestyle="--", label="concept drift")
    ax.set_xlabel("event time (s)")
    ax.set_ylabel(f"accuracy per {s.window_s:g} s window")
    ax.set_ylim(0.3, 1.0)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(work_dir: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    s = settings or Settings()
    work = Path(work_dir or tempfile.mkdtemp(prefix="online-loop-"))
    batch = train_batch(work, s)
    loop = run_loop(work, batch, s)
    result = evaluate(batch, loop["served"], s)
    plot(result["table"], s, work / "online_loop.png")
    total = int(s.duration_s * s.rate)
    windows = loop["monitor"]
    monitored = int(windows["rows"].sum() + windows["late"].sum()) if len(windows) else 0
    return {**result, **loop, "plot": str(work / "online_loop.png"), "monitored": monitored,
            "samples_per_s": loop["trained"] / loop["wall_s"],
            "rows_per_s": total / loop["wall_s"]}


if __name__ == "__main__":
    flink_dl.use_jvm_archive()  # before the first gateway JVM: faster start-up
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    out = main(sys.argv[1] if len(sys.argv) > 1 else None)
    print(out["table"].to_string(index=False))
    if len(out["monitor"]):
        print("\nflink_dl.online.monitor, per version and window (first rows):")
        print(out["monitor"].head(12).to_string(index=False))
    print(f"\npre-drift accuracy {out['pre_drift_accuracy']:.3f}; after the drift: online "
          f"{out['online_after']:.3f}, static {out['static_after']:.3f}; recovered in "
          f"{out['recovery_s']} s of event time; {out['versions']} pipeline versions; "
          f"{out['samples_per_s']:.0f} samples/s trained, {out['rows_per_s']:.0f} rows/s "
          f"served; monitor counted {out['monitored']} labelled rows (closed windows); "
          f"plot: {out['plot']}")
