"""The bench's layers, read from the source: drivers import no workload or baseline, and a
baseline imports only the shared data, models and topology of the workloads."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
#: The workload modules a baseline may import: what it shares with the workload.
SHARED = {"bench.workloads.data", "bench.workloads.tf_models", "bench.workloads.six_nodes"}


def bench_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith(("bench.workloads", "bench.baselines"))
                  and n not in ("bench.workloads", "bench.baselines")}
    return found


def test_drivers_import_no_workload_or_baseline() -> None:
    for path in (BENCH / "drivers").glob("*.py"):
        assert bench_imports(path) == set(), path.name


def test_baselines_import_only_the_shared_workload_modules() -> None:
    for path in (BENCH / "baselines").glob("*.py"):
        workloads = {n for n in bench_imports(path) if n.startswith("bench.workloads")}
        # "from bench.workloads.data import FEATURES" also yields "bench.workloads.data.FEATURES"
        assert {n for n in workloads if not any(n == s or n.startswith(s + ".")
                                                for s in SHARED)} == set(), path.name


def test_every_bench_module_is_under_400_lines() -> None:
    for path in BENCH.rglob("*.py"):
        assert len(path.read_text().splitlines()) < 400, path
