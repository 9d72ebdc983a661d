"""Plots of benchmark results, written as PNG (the figures in docs/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _axes(size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def _save(fig: Any, ax: Any, path: Path, legend_size: int, grid: str) -> None:
    ax.grid(True, which=grid, alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def latency_plot(points: list[dict], path: Path) -> None:
    """p50 and p99 latency against the input rate, per job and setting (log-log)."""
    fig, ax = _axes((7, 4.5))
    keys = sorted({(p["job"], p["setting"]) for p in points})
    for job, setting in keys:
        mine = sorted((p for p in points if p["job"] == job and p["setting"] == setting),
                      key=lambda p: p["rate"])
        rates = [p["rate"] for p in mine]
        line, = ax.plot(rates, [p["p99_ms"] for p in mine], marker="o",
                        label=f"{job}, {setting}: p99")
        ax.plot(rates, [p["p50_ms"] for p in mine], marker=".", linestyle="--",
                color=line.get_color(), label=f"{job}, {setting}: p50")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input rate, rows/s")
    ax.set_ylabel("latency, arrival to prediction, ms")
    ax.set_title("Streaming predict latency (parallelism 1, MLP 16-256-256-1)")
    _save(fig, ax, path, legend_size=7, grid="both")


def soak_plot(curve: list[dict[str, float]], kinds: tuple[str, ...], warmup_s: float,
              path: Path, *, ylabel: str = "RSS, MiB (sum per kind)",
              title: str = "Soak: streaming training + streaming predict, process mode"
              ) -> None:
    """Each of ``kinds`` (RSS per kind of process by default) over the soak, with the end
    of its warm-up."""
    fig, ax = _axes((7, 4))
    t = [p["t_s"] for p in curve]
    for kind in kinds:
        ax.plot(t, [p[kind] for p in curve], marker=".", label=kind)
    ax.axvline(warmup_s, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("seconds since the job started")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _save(fig, ax, path, legend_size=8, grid="major")
