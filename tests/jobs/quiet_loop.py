"""The README's real-time loop on 1,250 labelled rows, as a user runs it (its own process,
INFO logging), with an online learner that publishes often: FTRL with ``batch_size=1`` and
a version every 2 steps. It ends the way ``HOW`` says, once every row is served and learned:

- ``cancel``: ``env.execute_async`` and ``client.cancel()`` (bounded file sources);
- ``timeout``: ``flink_dl.execute(env, timeout_s=...)`` runs past its timeout (monitored
  sources: an unbounded job).

``tests/test_online_quiet.py`` counts what it writes to stderr.

Usage: ``python -m tests.jobs.quiet_loop WORK_DIR [HOW]``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

import flink_dl
from examples.online_loop import REQUEST_COLUMNS, X, clicks, csv_source, write_csv
from flink_dl.errors import ClusterTimeoutError, FlinkDLError
from flink_dl.files import count_rows, read_files, write_files
from flink_dl.log import configure_logging
from flink_dl.models.store import ModelStore
from flink_dl.online import FTRLLogisticRegression, join_labels, monitor
from flink_dl.pipeline import Pipeline, StandardScaler, predict

ROWS = 1250
RATE = 50  # rows per second of event time


def trained_rows(store: ModelStore) -> int:
    """Rows the newest version learned from (0 while there is none, or while the learner
    prunes the version just read)."""
    try:
        return int(store.open(verify=False).metrics.get("samples", 0))
    except (FlinkDLError, OSError):
        return 0


#: ``timeout`` mode: the job's timeout (s), long enough to serve and learn every row.
TIMEOUT_S = 75


def main(work: Path, how: str = "cancel") -> None:
    flink_dl.use_jvm_archive()
    configure_logging()
    history = work / "history"
    history.mkdir(parents=True)
    write_csv(clicks(np.arange(-500, 0), RATE, 1e9, seed=1), history / "part-0.csv")
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    Pipeline([StandardScaler(X),
              FTRLLogisticRegression(X, "y", model_dir=work / "batch", alpha=0.5)]).fit(
        csv_source(t_env, "history", history, REQUEST_COLUMNS + ", y INT", False)
    ).save(work / "pipes")

    frame = clicks(np.arange(ROWS), RATE, 1e9, seed=2)
    for name in ("requests", "labels"):
        (work / name).mkdir()
    write_csv(frame.drop(columns=["y"]), work / "requests" / "part-0.csv")
    write_csv(frame[["id", "ts", "y"]], work / "labels" / "part-0.csv")
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    unbounded = how != "cancel"
    requests = csv_source(t_env, "requests", work / "requests", REQUEST_COLUMNS, unbounded)
    labels = csv_source(t_env, "labels", work / "labels", "id BIGINT, ts TIMESTAMP(3), y INT",
                        unbounded)
    scored = predict(requests, work / "pipes")
    samples = join_labels(scored, labels, key="id", within=10)
    FTRLLogisticRegression(X, "y", model_dir=work / "online", alpha=0.5, batch_size=1,
                           init_from=ModelStore(work / "batch").open().path,
                           export_every_steps=2).fit_stream(samples, work / "pipes")
    served = write_files(scored.select(scored.id, scored.pipeline_version), work / "served")
    write_files(monitor(samples, label="y", score="probability", window=5,
                        reference=work / "pipes"), work / "metrics")
    online = ModelStore(work / "online")
    if how == "timeout":
        try:
            flink_dl.execute(env, "quiet loop", timeout_s=TIMEOUT_S)
        except ClusterTimeoutError:
            print("ended: timeout", flush=True)
    else:
        client = env.execute_async("quiet loop")
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline and not (
                    count_rows(served) >= ROWS and trained_rows(online) >= ROWS):
                time.sleep(0.5)
        finally:
            if not client.get_job_execution_result().done():
                client.cancel().result()
            flink_dl.cleanup(env)
    print(f"served {len(read_files(served))} rows", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:3])
