"""Run every benchmark and print one table per benchmark: ``python -m bench``."""

from __future__ import annotations

import argparse
import logging

from bench import cluster_startup, data_plane


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
    parser.add_argument("--only", choices=["startup", "channel", "ingest", "memory"],
                        action="append", help="run only these benchmarks (default: all)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only or ["startup", "channel", "ingest", "memory"])
    if "startup" in only:
        print_table("ML cluster start-up, 6 nodes, local mini-cluster (median of "
                    f"{args.repeats}; baseline = same topology of no-op Python operators)",
                    cluster_startup.main(args.repeats))
    if "channel" in only:
        print_table("Shared-memory channel, two processes, vs memcpy of the same bytes",
                    data_plane.channel_table())
    if "ingest" in only:
        print_table(f"Flink source -> nodes counting rows, {args.rows:,} rows x 16 float32 "
                    "(steady rates: large minus 1,000-row job; loopback mode)",
                    data_plane.end_to_end(args.rows, row_path_rows=200_000))
    if "memory" in only:
        print_table("Peak memory as the input grows (1 node, datagen)",
                    data_plane.memory_growth((args.rows // 2, args.rows * 2)))


if __name__ == "__main__":
    main()
