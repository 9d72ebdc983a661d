"""Result tables printed as Markdown."""

from __future__ import annotations


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    """``rows`` (the same columns each) as a Markdown table under a ``## title``."""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols}
    print(f"\n## {title}\n")
    print("| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    for r in rows:
        print("| " + " | ".join(_fmt(r[c]).ljust(widths[c]) for c in cols) + " |")


def cpu_table(result: dict) -> list[dict[str, object]]:
    """A run's CPU seconds per kind of process (``result["cpu_s"]``, ``"jit_s"`` and
    ``"faults"`` from ``bench.drivers.cpu_breakdown.CpuSampler``)."""
    total = sum(result["cpu_s"].values())
    faults = result.get("faults", {})
    rows = [{"process": kind, "CPU s": seconds, "share": seconds / total,
             "page faults": faults.get(kind)}
            for kind, seconds in sorted(result["cpu_s"].items(), key=lambda kv: -kv[1])]
    rows.append({"process": "of the JVM: its JIT compiler threads",  # part of the JVM row
                 "CPU s": result["jit_s"], "share": result["jit_s"] / total,
                 "page faults": None})
    return rows
