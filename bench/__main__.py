"""Run every benchmark and print one table per benchmark: ``python -m bench``."""

from __future__ import annotations

import argparse
import logging

from bench import cluster_startup


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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print_table("ML cluster start-up, 6 nodes, local mini-cluster (median of "
                f"{args.repeats}; baseline = same topology of no-op Python operators)",
                cluster_startup.main(args.repeats))


if __name__ == "__main__":
    main()
