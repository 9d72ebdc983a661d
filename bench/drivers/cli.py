"""The command line: ``python -m bench [--only a,b] [--list]`` runs the registered
benchmarks in registry order and prints each table as it is ready."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from bench.drivers.tables import print_table
from bench.registry import Benchmark, Plot, Settings, UnknownBenchmarkError, benchmarks, lookup

log = logging.getLogger("bench")
#: The repository root: node processes and Flink's Python workers import ``bench`` from it.
ROOT = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run every benchmark and print one table per benchmark.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", action="append", metavar="NAME[,NAME...]",
                        help="run only these benchmarks (default: all; --list names them)")
    parser.add_argument("--list", action="store_true",
                        help="list the benchmarks, in run order, and exit")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    return parser


def list_benchmarks() -> None:
    """One line per benchmark: name, title and goal."""
    every = benchmarks()
    width = max(len(b.name) for b in every)
    for b in every:
        goal = f" (goal: {b.goal})" if b.goal else ""
        print(f"{b.name.ljust(width)}  {b.title}{goal}")


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        list_benchmarks()
        return
    names = [n.strip() for value in args.only or [] for n in value.split(",") if n.strip()]
    if args.only and not names:
        parser.error("--only names no benchmark (--list names them)")
    try:
        chosen = lookup(names) if args.only else benchmarks()
    except UnknownBenchmarkError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING)
    import flink_dl

    flink_dl.use_jvm_archive()  # the benchmarks' gateway JVM starts as a user's script's
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    settings = Settings(repeats=args.repeats, rows=args.rows, soak_seconds=args.soak_seconds)
    failed = [b.name for b in chosen if not run_one(b, settings)]
    if failed:
        raise SystemExit(f"benchmarks that failed: {', '.join(failed)} (tracebacks above)")


def run_one(benchmark: Benchmark, settings: Settings) -> bool:
    """Run one benchmark, printing its tables as they come; its changes to the environment
    variables (a process-mode switch) are undone after it, and its failure is reported
    without stopping the others."""
    saved = dict(os.environ)
    try:
        for output in benchmark.run(settings):
            if isinstance(output, Plot):
                print(f"\nplot: {output.path}")
            else:
                print_table(output.title, output.rows)
        return True
    except Exception:
        log.exception("benchmark %r failed", benchmark.name)
        return False
    finally:
        os.environ.clear()
        os.environ.update(saved)
