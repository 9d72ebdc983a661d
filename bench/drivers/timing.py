"""Run order and rates: interleaved runs on a quiet machine, median runs, steady rates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from bench.drivers.cpu_breakdown import settle

SMALL_ROWS = 1_000
_Run = TypeVar("_Run", bound=dict[str, Any])
#: Fewer rows than this give no steady rate above the start-up's noise.
MIN_ROWS = 100 * SMALL_ROWS


def interleaved_runs(repeats: int, runners: dict[str, Callable[[], dict]]
                     ) -> dict[str, list[dict]]:
    """``repeats`` runs of each runner, taking turns, each on a quiet machine."""
    runs: dict[str, list[dict]] = {kind: [] for kind in runners}
    for _ in range(repeats):
        for kind, run in runners.items():
            settle()
            runs[kind].append(run())
    return runs


def median_run(runs: list[dict]) -> dict:
    """The run with the median samples/s (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: r["samples_per_s"])[(len(runs) - 1) // 2]


def steady_pair(job: Callable[[int], _Run], rows: int, what: str) -> tuple[_Run, _Run]:
    """``job(rows)`` and the quicker of two ``job(SMALL_ROWS)`` runs (the first pays this
    job shape's one-time costs), whose differences give steady rates: the full one must
    take longer (``RuntimeError``) and have at least ``MIN_ROWS`` rows (``ValueError``).
    A run is a dict with its ``"wall_s"``."""
    if rows < MIN_ROWS:
        raise ValueError(f"{what} needs at least {MIN_ROWS} rows for a steady rate, got {rows}")
    small = min((job(SMALL_ROWS) for _ in range(2)), key=lambda run: run["wall_s"])
    full = job(rows)
    if full["wall_s"] <= small["wall_s"]:
        raise RuntimeError(f"{what}: {rows} rows took {full['wall_s']:.2f} s, no longer than "
                           f"{SMALL_ROWS} rows ({small['wall_s']:.2f} s); rerun on a quiet "
                           "machine")
    return full, small
