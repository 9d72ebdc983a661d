"""Run every benchmark and print one table per benchmark: ``python -m bench``."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

# Node processes and Flink's Python workers import this package's entries and models.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")) if p)

from bench import (
    cluster_startup,
    data_plane,
    demo_startup,
    drift,
    inference,
    latency,
    multihost_startup,
    pipeline,
    recovery,
    soak,
    tf_training,
    training,
)

log = logging.getLogger("bench")


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols}
    print(f"\n## {title}\n")
    print("| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    for r in rows:
        print("| " + " | ".join(_fmt(r[c]).ljust(widths[c]) for c in cols) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["startup", "multihost", "channel", "ingest",
                                           "memory", "w1", "w1tf", "w3", "recovery",
                                           "drift", "latency", "soak", "pipeline", "demo"],
                        action="append", help="run only these benchmarks (default: all)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only or ["startup", "multihost", "channel", "ingest", "memory", "w1", "w1tf",
                             "w3", "recovery", "drift", "latency", "soak", "pipeline", "demo"])

    def run_startup() -> None:
        print_table("ML cluster start-up, 6 nodes, local mini-cluster (median of "
                    f"{args.repeats}; baseline = same topology of no-op Python operators)",
                    cluster_startup.main(args.repeats))

    def run_demo() -> None:
        print_table("Digits demo start-up, execute -> every rank training (2 ranks, embedded "
                    f"mini-cluster, a fresh interpreter per run, {args.repeats} runs; "
                    "goal: first batch on every rank <= 8 s)", demo_startup.main(args.repeats))

    def run_multihost() -> None:
        print_table("ML cluster start-up, 6 nodes, flink run on a real cluster (JobManager + 2 "
                    "TaskManagers): one host vs three network-namespace hosts sharing nothing "
                    f"(median of {args.repeats})", multihost_startup.main(args.repeats))

    def run_recovery() -> None:
        print_table("Recovery, AM + 6 nodes, local mini-cluster, process mode (median of "
                    f"{args.repeats}; kill -> every node of the new attempt running)",
                    recovery.main(args.repeats))

    def run_channel() -> None:
        print_table("Shared-memory channel, two processes, vs memcpy of the same bytes",
                    data_plane.channel_table())

    def run_ingest() -> None:
        print_table(f"Flink source -> nodes counting rows, {args.rows:,} rows x 16 float32 "
                    "(steady rates: large minus 1,000-row job; loopback mode)",
                    data_plane.end_to_end(args.rows, row_path_rows=200_000))

    def run_memory() -> None:
        print_table("Peak memory as the input grows (1 node, datagen)",
                    data_plane.memory_growth((args.rows // 2, args.rows * 2)))

    def run_w1() -> None:
        w1, cpu = training.w1_table(args.rows, args.repeats)
        print_table(f"W1: CSV -> DDP training, {args.rows:,} rows x 16 float32 + label, MLP "
                    "16-64-64-1, batch 1024 per worker, 2 workers, 1 epoch; median of "
                    f"{args.repeats} interleaved runs (goals: >= 0.7 of the limit, >= 2x Ray's "
                    "samples/s, <= 0.5x its wall)", w1)
        print_table("W1, flink-dl run: CPU seconds per kind of process (2 cores)", cpu)

    def run_w1tf() -> None:
        w1tf, cpu = tf_training.tf_w1_table(args.rows, args.repeats)
        print_table(f"W1-TF: CSV -> Keras under MultiWorkerMirroredStrategy, {args.rows:,} rows, "
                    "MLP 16-64-64-1, global batch 2048 (1024 per worker), 2 workers, 1 epoch; "
                    f"median of {args.repeats} interleaved runs (goal >= 0.7 of plain "
                    "tf.distribute)", w1tf)
        print_table("W1-TF, flink-dl run: CPU seconds per kind of process (2 cores)", cpu)

    def run_drift() -> None:
        print_table("Real-time loop across a concept drift at 60 s (2,000 rows/s of event time; "
                    "baseline = the static batch model on the same rows, same run)",
                    drift.main())

    def run_w3() -> None:
        print_table(f"W3: batch inference, {args.rows:,} rows, MLP 16-256-256-1, batches of "
                    "4096, 1 torch thread per process", inference.w3_table(args.rows))

    def run_pipeline() -> None:
        print_table("Pipeline transform of generated rows, a fitted 6-stage feature "
                    "pipeline vs the same features hand-written in Flink SQL and vs "
                    f"scikit-learn in a pandas UDF (parallelism 1, median of {args.repeats}; "
                    "blackhole sink)", pipeline.main(args.rows, args.repeats))
        print_table("Pipeline: planning time against the number of categories "
                    "(StringIndexer / OneHotEncoder models, parallelism 1)",
                    pipeline.category_planning())

    def run_latency() -> None:
        table, points = latency.main()
        print_table("Streaming predict latency, arrival -> prediction (parallelism 1, MLP "
                    "16-256-256-1; baseline = the same job with default settings, same run)",
                    table)
        plot = Path(__file__).resolve().parent.parent / "docs" / "latency.png"
        latency.plot(points, plot)
        print(f"\nplot: {plot}")

    def run_soak() -> None:
        warmup = min(120.0, args.soak_seconds / 5)
        table, curve = soak.run(args.soak_seconds, warmup_s=warmup)
        print_table(f"Memory soak, {args.soak_seconds:.0f} s of streaming training (2 ranks, "
                    "2,000 rows/s) + streaming predict (2,000 rows/s), process mode; RSS "
                    f"summed per kind of process, warm-up {warmup:.0f} s", table)
        plot = Path(__file__).resolve().parent.parent / "docs" / "soak.png"
        soak.plot(curve, warmup, plot)
        print(f"\nplot: {plot}")

    steps = {"startup": run_startup, "demo": run_demo, "multihost": run_multihost,
             "recovery": run_recovery, "channel": run_channel, "ingest": run_ingest,
             "memory": run_memory, "w1": run_w1, "w1tf": run_w1tf, "drift": run_drift,
             "w3": run_w3, "pipeline": run_pipeline, "latency": run_latency,
             "soak": run_soak}
    failed = [name for name, run in steps.items() if name in only and not _run_step(name, run)]
    if failed:
        raise SystemExit(f"benchmarks that failed: {', '.join(failed)} (tracebacks above)")


def _run_step(name: str, run: Callable[[], None]) -> bool:
    """Run one benchmark; its changes to the environment variables (a process-mode switch)
    are undone after it, and its failure is reported without stopping the others."""
    saved = dict(os.environ)
    try:
        run()
        return True
    except Exception:
        log.exception("benchmark %r failed", name)
        return False
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    main()
