"""Benchmarks of the data plane (issue 3), each against a limit measured in the same run.

* channel: GB/s through the shared-memory ring between two processes (producer copies in,
  consumer reads in place) vs a plain memcpy of the same bytes in one process;
* end to end: rows/s from a Flink source (datagen, CSV files) into nodes that only count
  rows, 16 float32 columns, 1 and 2 nodes, vs Flink's own source -> blackhole and vs a
  row-at-a-time Python operator;
* memory: the node's and the operator process's peak memory as the input grows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv

import flink_dl
from bench.baselines.flink_ingest import run_blackhole, run_row_at_a_time
from bench.drivers.timing import SMALL_ROWS
from bench.workloads.data import FEATURES, ingest_env, ingest_source_ddl
from flink_dl.channel.ring import FrameKind, Ring


# ----------------------------------------------------------------------- channel
def channel_gbps(message_bytes: int,
                 total_bytes: int = 2 << 30) -> tuple[float, float, float]:
    """GB/s for messages of ``message_bytes``: the ring between two processes, memcpy into
    one cache-hot buffer, and memcpy into a ring-sized buffer."""
    count = max(1, total_bytes // message_bytes)
    payload = os.urandom(message_bytes)
    ring = Ring.create("bench", capacity=max(8 << 20, 4 * message_bytes))
    pid = os.fork()
    if pid == 0:
        try:
            consumer = Ring(ring.handle)
            while True:
                kind, _view = consumer.recv_view()
                consumer.release()
                if kind is FrameKind.END:
                    break
        finally:
            os._exit(0)
    started = time.perf_counter()
    for _ in range(count):
        ring.send(payload)
    ring.send_end()
    os.waitpid(pid, 0)
    ring_s = time.perf_counter() - started
    ring.close()
    target = bytearray(message_bytes)
    started = time.perf_counter()
    for _ in range(count):
        target[:] = payload
    copy_s = time.perf_counter() - started
    # The same copies into a buffer as large as the ring (as the ring's writes land).
    region = bytearray(ring.capacity)
    slots = ring.capacity // message_bytes
    started = time.perf_counter()
    for i in range(count):
        offset = (i % slots) * message_bytes
        region[offset:offset + message_bytes] = payload
    region_s = time.perf_counter() - started
    total = count * message_bytes
    return total / ring_s / 1e9, total / copy_s / 1e9, total / region_s / 1e9


# ------------------------------------------------------------------- end to end
def count_rows(ctx: flink_dl.NodeContext) -> None:
    """Node entry: count rows; report rate from first to last batch and peak memory."""
    import resource as res
    import time as t

    rows, first, last = 0, None, None
    for batch in ctx.batches():
        now = t.perf_counter()
        first = first or now
        last = now
        rows += batch.num_rows
    ctx.write([{"rows": rows, "busy_s": (last - first) if first else 0.0,
                "peak_rss_mb": res.getrusage(res.RUSAGE_SELF).ru_maxrss / 1024}])


OUT_SCHEMA = pa.schema([("rows", pa.int64()), ("busy_s", pa.float64()),
                        ("peak_rss_mb", pa.float64())])


class PeakRss:
    """Samples this process's RSS (loopback: Flink's Python operators run here)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_flink_dl(rows: int, csv_dir: Path | None, nodes: int) -> dict[str, float]:
    """One ingest job; wall time from submit to results, the nodes' busy time, peak RSS."""
    env, t_env = ingest_env()
    t_env.execute_sql(ingest_source_ddl("src", rows, csv_dir))
    config = flink_dl.ClusterConfig(roles={"worker": nodes}, entry=count_rows, name="bench")
    flink_dl.add_am_role(env, config)
    out = flink_dl.add_role(env, config, "worker", t_env.from_path("src"),
                            output_schema=OUT_SCHEMA)
    started = time.perf_counter()
    with PeakRss() as rss, out.execute_and_collect("flink-dl ingest") as results:
        reports = list(results)
    wall = time.perf_counter() - started
    got = sum(r.rows for r in reports)
    if got != rows:
        raise AssertionError(f"nodes counted {got} rows, expected {rows}")
    return {"wall_s": wall, "busy_s": max(r.busy_s for r in reports),
            "node_peak_mb": max(r.peak_rss_mb for r in reports),
            "operator_peak_mb": rss.peak / 2**20}


def write_csv(directory: Path, rows: int, files: int = 4) -> None:
    rng = np.random.default_rng(0)
    per_file = rows // files
    for i in range(files):
        data = rng.random((per_file, len(FEATURES)), dtype=np.float32)
        table = pa.table({c: data[:, j] for j, c in enumerate(FEATURES)})
        pacsv.write_csv(table, directory / f"part-{i}.csv",
                        pacsv.WriteOptions(include_header=False))


def _steady_rate(rows: int, wall_s: float, small_wall_s: float) -> float:
    """Rows/s once running: the extra rows over the extra time of a large vs a small job."""
    return (rows - SMALL_ROWS) / max(wall_s - small_wall_s, 1e-3)


def end_to_end(rows: int, row_path_rows: int) -> list[dict[str, object]]:
    """Each contender runs twice, on ``rows`` and on 1,000 rows; the difference cancels the
    fixed cost of starting a Flink job (several seconds here, the same for all)."""
    out: list[dict[str, object]] = []
    csv_root = Path(tempfile.mkdtemp(prefix="flink-dl-bench-csv-"))
    try:
        dirs = {}
        for label, n in (("full", rows), ("row", row_path_rows), ("small", SMALL_ROWS)):
            dirs[label] = csv_root / label
            dirs[label].mkdir()
            write_csv(dirs[label], n)
        for source in ("datagen", "csv"):
            def src(label: str, source: str = source) -> Path | None:
                return None if source == "datagen" else dirs[label]

            limit = _steady_rate(rows, run_blackhole(rows, src("full")),
                                 run_blackhole(SMALL_ROWS, src("small")))
            row_rate = _steady_rate(row_path_rows, run_row_at_a_time(row_path_rows, src("row")),
                                    run_row_at_a_time(SMALL_ROWS, src("small")))
            for nodes in (1, 2):
                big = run_flink_dl(rows, src("full"), nodes)
                small = run_flink_dl(SMALL_ROWS, src("small"), nodes)
                rate = _steady_rate(rows, big["wall_s"], small["wall_s"])
                out.append({
                    "source": source, "nodes": nodes, "rows": rows,
                    "flink-dl rows/s": round(rate),
                    "node-measured rows/s": round(rows / big["busy_s"]) if big["busy_s"]
                    else None,
                    "limit: source->blackhole": round(limit),
                    "row-at-a-time": round(row_rate),
                    "vs limit": rate / limit, "vs row path": rate / row_rate,
                    "flink-dl wall s": round(big["wall_s"], 1),
                })
    finally:
        shutil.rmtree(csv_root, ignore_errors=True)
    return out


def memory_growth(sizes: tuple[int, ...]) -> list[dict[str, object]]:
    rows_out = []
    for rows in sizes:
        r = run_flink_dl(rows, None, 1)
        rows_out.append({"input rows": rows, "input MB": rows * 16 * 4 / 1e6,
                         "node peak RSS MB": r["node_peak_mb"],
                         "operator process peak RSS MB": r["operator_peak_mb"]})
    return rows_out


def channel_table(repeats: int = 3) -> list[dict[str, object]]:
    """Best of ``repeats`` for every contender (this VM's neighbours add noise)."""
    rows = []
    for size, label in ((64 << 10, "64 KiB"), (1 << 20, "1 MiB")):
        runs = [channel_gbps(size, total_bytes=1 << 30) for _ in range(repeats)]
        ring, hot, region = (max(r[i] for r in runs) for i in range(3))
        rows.append({"message": label, "ring GB/s": ring, "memcpy hot GB/s": hot,
                     "memcpy ring-sized GB/s": region, "ring / hot": ring / hot,
                     "ring / ring-sized": ring / region})
    return rows

