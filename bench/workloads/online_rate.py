"""Benchmark: the real-time loop's sustained training rate, input all there (part of
``bench --only online``; ``bench.workloads.online`` writes the rows)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.workloads.online import START, loop_sources, write_csv

#: ``sustained`` stops when no new version has come for this long (s).
STALL_S = 10.0


def sustained(data_dir: Path, work: Path, batch_size: int, rows: int = 60_000,
              timeout_s: float = 600.0) -> dict[str, Any]:
    """Samples/s the loop (predict, join, FTRL ``fit_stream`` cold) trains when its input
    is all there: the drifting stream's rows repeated to ``rows`` with new ids, in one file
    of a monitored directory; from the first published version to the newest (the last
    few hundred rows can wait in a Python operator's bundle for rows that never come:
    the table says how many samples were learned)."""

    import flink_dl
    from flink_dl.models.store import ModelStore
    from flink_dl.online import FTRLLogisticRegression, join_labels
    from flink_dl.pipeline import Pipeline, predict

    frame = pd.read_csv(data_dir / "hyperplane.csv")
    features = [c for c in frame.columns if c not in ("id", "y")]
    frame = pd.concat([frame] * (rows // len(frame) + 1)).iloc[:rows].reset_index(drop=True)
    frame["id"] = range(rows)
    ts = START + pd.to_timedelta(frame["id"] / 1000, unit="s")
    for name in ("requests", "labels"):
        (work / name).mkdir(parents=True)
    write_csv(frame[["id", *features]].assign(ts=ts)[["id", "ts", *features]],
              work / "requests" / "part-0.csv")
    write_csv(frame[["id", "y"]].assign(ts=ts)[["id", "ts", "y"]], work / "labels" / "p.csv")
    env, requests, labels = loop_sources(work, features)
    learner = FTRLLogisticRegression(features, "y", model_dir=work / "online",
                                     batch_size=batch_size)
    Pipeline([learner]).untrained(requests).save(work / "pipes")
    scored = predict(requests, work / "pipes")
    learner.fit_stream(join_labels(scored, labels, key="id", within=10), work / "pipes")
    store = ModelStore(work / "online")
    client = env.execute_async(f"online bench sustained, batch {batch_size}")
    points: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout_s
    ended = client.get_job_execution_result()

    def stalled() -> bool:  # the last rows may wait in a Python bundle for rows to come
        return bool(points) and time.monotonic() - points[-1][0] > STALL_S

    try:
        while time.monotonic() < deadline and not ended.done() and not stalled() and (
                not points or points[-1][1] < rows):
            time.sleep(0.05)
            with contextlib.suppress(Exception):  # a version pruned while read
                samples = int(store.open(verify=False).metrics.get("samples", 0))
                if samples and (not points or samples != points[-1][1]):
                    points.append((time.monotonic(), samples))
    finally:
        if not ended.done():
            client.cancel().result()
        flink_dl.cleanup(env)
    learned = points[-1][1] if points else 0
    rate = None
    if len(points) >= 2 and points[-1][0] > points[0][0]:
        (t0, s0), (t1, s1) = points[0], points[-1]
        rate = round((s1 - s0) / (t1 - t0))
    return {"batch_size": batch_size, "samples/s": rate,
            "samples learned": f"{learned:,} of {rows:,}",
            "model versions": store.latest_number()}
