"""The registry of benchmarks: each one's name (its ``--only`` name), title, goal and run
function, kept in the order ``python -m bench`` runs them.

Every benchmark has the same entry point: ``run(settings: Settings) -> Iterator[Output]``,
a generator of the tables (and plots) it made, each yielded as soon as it is ready.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from flink_dl.errors import ConfigError, FlinkDLError


class UnknownBenchmarkError(FlinkDLError, LookupError):
    """Names asked for that no benchmark is registered under."""

    def __init__(self, unknown: list[str], known: list[str]) -> None:
        super().__init__(f"unknown benchmark(s): {', '.join(unknown)} "
                         f"(known: {', '.join(known)})")
        self.unknown = unknown


@dataclass(frozen=True)
class Settings:
    """The command line's settings, given to every benchmark."""

    repeats: int = 3
    rows: int = 1_000_000
    soak_seconds: float = 600.0


@dataclass(frozen=True)
class Table:
    """One result table: a title and its rows (column -> value, the same columns each)."""

    title: str
    rows: list[dict[str, object]]


@dataclass(frozen=True)
class Plot:
    """A plot a benchmark wrote."""

    path: Path


Output = Table | Plot
Run = Callable[[Settings], Iterator[Output]]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: ``name`` for ``--only``, a short ``title``, ``run`` (the one entry
    point) and ``goal``, what it must show (``None``: figures only, no set goal)."""

    name: str
    title: str
    run: Run
    goal: str | None = None


_REGISTRY: dict[str, Benchmark] = {}


def register(name: str, title: str, goal: str | None = None) -> Callable[[Run], Run]:
    """Decorator: register ``run`` under ``name`` (after those registered before it)."""

    def add(run: Run) -> Run:
        if name in _REGISTRY:
            raise ConfigError(f"benchmark {name!r} is registered twice")
        _REGISTRY[name] = Benchmark(name, title, run, goal)
        return run

    return add


def benchmarks() -> list[Benchmark]:
    """Every registered benchmark, in registry (run) order."""
    import bench.catalog  # noqa: F401 (registers every benchmark on first import)

    return list(_REGISTRY.values())


def lookup(names: list[str]) -> list[Benchmark]:
    """The benchmarks named, in registry order; ``UnknownBenchmarkError`` names any that is
    not registered."""
    every = benchmarks()
    known = [b.name for b in every]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownBenchmarkError(unknown, known)
    return [b for b in every if b.name in names]
