"""``flink-dl jvm-archive``: build (or show) the JVM class archive that makes Flink start
faster; see :mod:`flink_dl.startup.jvm_archive`."""

from __future__ import annotations

import argparse


def jvm_archive(args: argparse.Namespace) -> int:
    """Build the archive unless it exists (``--rebuild`` forces it); ``--status`` only reports."""
    from flink_dl.startup import jvm_archive as archive

    if args.status:
        found = archive.find_archive()
        print(f"JVM class archive: {found if found else 'none'} (cache dir {archive.cache_dir()})")
        return 0 if found else 1
    info = archive.build_archive(rebuild=args.rebuild)
    print(f"JVM class archive: {info.path} ({info.size_bytes / 1e6:.0f} MB, "
          f"built in {info.build_seconds:.0f} s)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("jvm-archive", help="build the JVM class archive that makes the "
                            "embedded Flink start faster (a one-off, about 40 s)")
    parser.add_argument("--rebuild", action="store_true", help="build it even if it exists")
    parser.add_argument("--status", action="store_true",
                        help="only say whether an archive exists (exit 1 if not)")
    parser.set_defaults(func=jvm_archive)
