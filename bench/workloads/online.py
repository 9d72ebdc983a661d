"""Benchmark: the README's real-time loop against River, prequentially, on the same rows.

River's reference (``StandardScaler | LogisticRegression``, River's defaults) predicts each
row and then learns it (``bench.baselines.river_online``, in River's own environment,
which also writes the rows). flink-dl runs the README's two loop blocks as written (only
the feature list and the paths are this data's), in a streaming job fed by files written
``speed`` times faster than the stream's rate, and is scored on what it served: each
request's ``probability`` from the pipeline version it was served with, against its label.

- ``cold``: the README's cold-start block (an untrained ``OnlineStandardScaler`` +
  ``FTRLLogisticRegression``); every row is scored, as River's from its first row.
- ``warm``: the README's first block, on a pipeline (``StandardScaler`` + FTRL) fitted on
  the first ``WARM_ROWS`` rows; the rows after them are scored (River learns those rows
  first).

Labels arrive with their requests (River's prequential order: a row's label is known once
it has been predicted). Rows per second of event time: ``RATES`` (1x); the same rows are
replayed 5x faster too. The loop's sustained rate is its samples trained per second of
wall time when the whole drifting stream is written at once.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
RIVER_VENV = ".venv-river"
RIVER_PACKAGES = ("river==0.26.1",)
#: Rows of each stream fitted in batch before the warm loop (and learned first by River).
WARM_ROWS = 250
#: Rows per second of event time at 1x.
RATES = {"phishing": 10, "hyperplane": 25}
START = pd.Timestamp("2026-01-01 00:00:00")
#: How long the feed waits, after its first file, for a version that learned from it (s):
#: a learner of batches of 64 cannot learn before 64 rows have come.
LEARN_WAIT_S = 15.0
#: How often the feeder writes a file of rows (wall seconds).
FILE_EVERY_S = 0.1
#: The README's paths, replaced with this run's.
README_PATHS = ("/data/pipelines", "/data/online", "/data/batch-models/v000001")


def river(work: Path) -> dict[str, Any]:
    """River's figures, and the streams written as CSV into ``work / "data"``."""
    from bench.drivers.venvs import own_python

    python = own_python(RIVER_VENV, RIVER_PACKAGES, "river")
    out = work / "river.json"
    subprocess.run([str(python), "-m", "bench.baselines.river_online", str(out),
                    str(work / "data"), str(WARM_ROWS)], check=True, timeout=600, cwd=ROOT,
                   start_new_session=True)
    return json.loads(out.read_text())


def readme_loops() -> tuple[str, str]:
    """The README's two real-time loop blocks: warm (the first), cold (the second)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## The real-time loop\n"):]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return blocks[0], blocks[1]


@dataclass
class Run:
    """One loop run: a stream, a start, a speed."""

    stream: str
    start: str  # "cold" | "warm"
    speed: float
    #: The learner's batch size written into the README's code (``None``: as written).
    batch_size: int | None = None


def run_loop(work: Path, frame: pd.DataFrame, features: list[str], run: Run,
             rate: float, timeout_s: float = 600.0) -> dict[str, Any]:
    """The README loop on ``frame``'s rows (from ``WARM_ROWS`` when warm); what it served,
    scored against the labels."""

    import flink_dl
    from flink_dl.files import count_rows, read_files, write_files
    from flink_dl.models.store import ModelStore

    work.mkdir(parents=True)
    warm_code, cold_code = readme_loops()
    first = WARM_ROWS if run.start == "warm" else 0
    batch_model = ""
    if run.start == "warm":
        batch_model = fit_batch(work, frame.iloc[:first], features)
    stream = frame.iloc[first:].reset_index(drop=True)
    env, requests, labels = loop_sources(work, features)
    code = warm_code if run.start == "warm" else cold_code
    if run.batch_size is not None:
        assert 'model_dir="/data/online")' in code, "the README's learner line changed"
        code = code.replace('model_dir="/data/online")',
                            f'model_dir="/data/online", batch_size={run.batch_size})')
    for path, here in zip(README_PATHS, (work / "pipes", work / "online", batch_model),
                          strict=True):
        code = code.replace(f'"{path}"', repr(str(here)))
    code = code.replace('X = ["x1", "x2"]', f"X = {features!r}")
    namespace: dict[str, Any] = {"requests": requests, "labels": labels,
                                 "__name__": "readme_loop"}
    exec(compile(code, f"README loop ({run.start})", "exec"), namespace)
    scored = namespace["scored"]
    extra = [scored.from_prior] if run.start == "cold" else []
    served_dir = write_files(scored.select(scored.id, scored.probability,
                                           scored.pipeline_version, *extra), work / "served")
    stop = threading.Event()
    timeline = Timeline()
    feeder = threading.Thread(target=feed, args=(stream, features, rate, run.speed, work,
                                                 served_dir, stop, timeline), daemon=True)
    client = env.execute_async(f"online bench {run.stream} {run.start} {run.speed:g}x")
    started = time.monotonic()
    feeder.start()
    deadline = started + len(stream) / rate / run.speed + timeout_s
    online = ModelStore(work / "online")
    learned: dict[int, int] = {}
    watcher = threading.Thread(target=watch_versions, args=(work / "pipes", online, learned,
                                                            stop, served_dir, timeline),
                               daemon=True)
    watcher.start()
    try:
        while count_rows(served_dir) < len(stream) and time.monotonic() < deadline:
            time.sleep(0.2)
        wall = time.monotonic() - started
    finally:
        stop.set()
        client.cancel().result()
        flink_dl.cleanup(env)
        watcher.join(timeout=5)
    served = read_files(served_dir)
    rows = served.merge(stream[["id", "y"]].reset_index(names="position"), on="id")
    right = (rows["probability"] >= 0.5) == (rows["y"] == 1)
    trained = int(online.open(verify=False).metrics.get("samples", 0)) \
        if online.latest_number() else 0
    # rows before a served row that its version had not learned (from the samples count
    # of the model version newest when the pipeline version appeared)
    known = pd.Series(learned, dtype="float64").sort_index().cummax()
    # a version the watcher missed: what the newest earlier one it saw had learned
    behind = rows["position"] - known.reindex(
        range(1, int(rows["pipeline_version"].max()) + 1)).ffill().fillna(0).reindex(
        rows["pipeline_version"]).to_numpy()
    return {"accuracy": float(right.mean()) if len(rows) else float("nan"),
            "served": len(rows), "rows": len(stream), "wall_s": wall, "trained": trained,
            "versions": ModelStore(work / "pipes").latest_number(),
            "lag_rows": float(behind.median()) if len(rows) else float("nan"),
            "from_prior": int(rows["from_prior"].sum()) if "from_prior" in rows else 0,
            **timeline.delays(len(stream))}


@dataclass
class Timeline:
    """When rows were written, served and learned: (monotonic s, rows so far) samples."""

    written: list[tuple[float, int]] = field(default_factory=list)
    served: list[tuple[float, int]] = field(default_factory=list)
    learned: list[tuple[float, int]] = field(default_factory=list)

    def delays(self, rows: int) -> dict[str, float]:
        """Median seconds from a row's file to its prediction, and to a model version
        that learned it."""
        def when(points: list[tuple[float, int]], position: int) -> float:
            return next((t for t, count in points if count > position), float("nan"))

        served, learned = [], []
        for position in range(0, rows, max(1, rows // 200)):
            start = when(self.written, position)
            served.append(when(self.served, position) - start)
            learned.append(when(self.learned, position) - start)
        return {"serve_s": float(pd.Series(served).median()),
                "learn_s": float(pd.Series(learned).median())}


def watch_versions(pipes: Path, online: Any, learned: dict[int, int],
                   stop: threading.Event, served_dir: Path, timeline: Timeline) -> None:
    """Record, for each pipeline version as it appears, how many samples the newest
    online model version had learned, and the timeline (polled every 10 ms)."""
    from flink_dl.files import count_rows
    from flink_dl.models.store import ModelStore

    store = ModelStore(pipes)
    while not stop.wait(0.01):
        now = time.monotonic()
        with contextlib.suppress(Exception):  # a file being written: the next poll
            timeline.served.append((now, count_rows(served_dir)))
        with contextlib.suppress(Exception):  # a version pruned while read: the next poll
            if online.latest_number():
                timeline.learned.append(
                    (now, int(online.open(verify=False).metrics.get("samples", 0))))
        try:
            number = store.latest_number()
            if number is None or number in learned:
                continue
            samples = int(online.open(verify=False).metrics.get("samples", 0)) \
                if online.latest_number() else 0
            learned[number] = samples
        except Exception:  # a version pruned while it was read: the next poll
            continue


def loop_sources(work: Path, features: list[str]) -> tuple[Any, Any, Any]:
    """A new job's environment with the requests and labels tables of ``work``'s monitored
    directories (a source subtask with no file goes idle after 1 s)."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.source.idle-timeout", "1 s")
    columns = ", ".join(f"`{f}` DOUBLE" for f in features)
    requests = file_source(t_env, "requests", work / "requests",
                           f"id BIGINT, ts TIMESTAMP(3), {columns}")
    labels = file_source(t_env, "labels", work / "labels", "id BIGINT, ts TIMESTAMP(3), y INT")
    return env, requests, labels


def fit_batch(work: Path, history: pd.DataFrame, features: list[str]) -> str:
    """The warm loop's batch pipeline (StandardScaler + FTRL) fitted on ``history`` and
    saved at ``work / "pipes"``; the batch model version's directory."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_dl.models.store import ModelStore
    from flink_dl.online import FTRLLogisticRegression
    from flink_dl.pipeline import Pipeline, StandardScaler

    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    table = t_env.from_pandas(history[[*features, "y"]].astype({"y": "int32"}))
    Pipeline([StandardScaler(features),
              FTRLLogisticRegression(features, "y", model_dir=work / "batch")]).fit(
        table).save(work / "pipes")
    return ModelStore(work / "batch").open().path


def file_source(t_env: Any, name: str, directory: Path, columns: str,
                monitored: bool = True) -> Any:
    """A CSV directory as a table with a 2 s watermark; ``monitored``: read new files every
    100 ms (unbounded)."""
    directory.mkdir(parents=True, exist_ok=True)
    monitor = ", 'source.monitor-interval' = '100 ms'" if monitored else ""
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {name} ({columns}, WATERMARK FOR ts AS ts - INTERVAL '2' "
        f"SECOND) WITH ('connector' = 'filesystem', 'path' = '{directory}', 'format' = "
        f"'csv'{monitor})")
    return t_env.from_path(name)


def feed(stream: pd.DataFrame, features: list[str], rate: float, speed: float, work: Path,
         served_dir: Path, stop: threading.Event, timeline: Timeline) -> None:
    """Write ``stream`` as request and label files, ``rate * speed`` rows per wall second
    (event time: ``id / rate`` seconds). The job's start-up is not measured: after the
    first file the feed waits until the job has served it and a model version has learned
    from it (River's learner, too, exists before its first row), or ``LEARN_WAIT_S``."""
    from flink_dl.files import count_rows
    from flink_dl.models.store import ModelStore

    online = ModelStore(work / "online")

    def learned_some() -> bool:
        with contextlib.suppress(Exception):  # no version yet, or one pruned while read
            return int(online.open(verify=False).metrics.get("samples", 0)) > 0
        return False

    rows_per_s = rate * speed
    ts = START + pd.to_timedelta(stream["id"] / rate, unit="s")
    requests = stream[["id", *features]].assign(ts=ts)[["id", "ts", *features]]
    labels = stream[["id", "y"]].assign(ts=ts)[["id", "ts", "y"]]
    per_file = max(1, round(rows_per_s * FILE_EVERY_S))
    begun = None
    for number, start in enumerate(range(0, len(stream), per_file)):
        part = slice(start, start + per_file)
        for frame, name in ((requests, "requests"), (labels, "labels")):
            write_csv(frame.iloc[part], work / name / f"part-{number:06d}.csv")
        timeline.written.append((time.monotonic(), min(start + per_file, len(stream))))
        waited = time.monotonic()
        while number == 0 and not (count_rows(served_dir) and (
                learned_some() or time.monotonic() - waited > LEARN_WAIT_S)):
            if stop.wait(0.05):
                return
        begun = begun or time.monotonic()
        pause = begun + (number + 1) * per_file / rows_per_s - time.monotonic()
        if stop.wait(max(0.0, pause)):
            return


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    hidden = path.with_name("." + path.name)
    frame.to_csv(hidden, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S.%f")
    hidden.rename(path)


def measure(speeds: tuple[float, ...] = (1.0, 5.0),
            runs: tuple[tuple[str, str, int | None], ...] = (
                ("phishing", "cold", None), ("phishing", "warm", None),
                ("hyperplane", "cold", None), ("phishing", "cold", 64)),
            batch_sizes: tuple[int, ...] = (1, 64)
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two tables: per stream, start and speed, flink-dl's prequential accuracy beside
    River's on the same rows; the loop's sustained samples/s per FTRL batch size beside
    River's rows/s (predict and learn, one process). One run."""
    from bench.workloads import online_rate

    work = Path(tempfile.mkdtemp(prefix="bench-online-"))
    try:
        reference = river(work)
        throughput = [{"learner": f"flink-dl loop, FTRL batch_size={size}",
                       **online_rate.sustained(work / "data", work / f"sustained-{size}",
                                               size)}
                      for size in batch_sizes]
        throughput.append({"learner": "River, StandardScaler | LogisticRegression (one "
                                      "process, no I/O)", "batch_size": 1,
                           "samples/s": round(reference["hyperplane"]["rows_per_s"]),
                           "samples learned": f"{reference['hyperplane']['rows']:,}",
                           "model versions": None})
        table = []
        for stream, start, batch_size in runs:
            frame = pd.read_csv(work / "data" / f"{stream}.csv")
            features = reference[stream]["features"]
            for speed in speeds:
                run = Run(stream, start, speed, batch_size)
                out = run_loop(work / f"{stream}-{start}-{speed:g}x-{batch_size}", frame,
                               features, run, RATES[stream])
                river_accuracy = reference[stream][start]
                table.append({
                    "stream": stream, "start": start, "speed": f"{speed:g}x",
                    "FTRL batch_size": batch_size or "README (1)",
                    "rows/s (event)": RATES[stream] * speed,
                    "flink-dl accuracy": round(out["accuracy"], 4),
                    "River accuracy": round(river_accuracy, 4),
                    "difference": round(out["accuracy"] - river_accuracy, 4),
                    "served": f"{out['served']}/{out['rows']}",
                    "rows behind (median)": out["lag_rows"],
                    "rows served the prior": out["from_prior"],
                    "to served, s": round(out["serve_s"], 3),
                    "to learned, s": round(out["learn_s"], 3),
                    "pipeline versions": out["versions"]})
        return table, throughput
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # quick look: python -m bench.workloads.online [stream start speed]
    import logging
    import sys

    logging.basicConfig(level=logging.WARNING)
    import flink_dl

    flink_dl.use_jvm_archive()
    if len(sys.argv) > 1:
        stream_name, start_name, speed_text = sys.argv[1:4]
        print(measure((float(speed_text),), ((stream_name, start_name, None),), ()))
    else:
        print(measure())
