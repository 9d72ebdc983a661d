"""``flink-dl models DIR``: the versions of a model directory, newest marked, optionally
checked against their manifests."""

from __future__ import annotations

import argparse
import json
import time

from flink_dl.models.store import ModelStore, TornModelError


def list_models(args: argparse.Namespace) -> int:
    """Print one line per version; with ``--verify`` re-check every file's SHA-256 and
    return 1 when one does not match (the line names the file)."""
    store = ModelStore(args.model_dir)
    numbers = store.version_numbers()
    if not numbers:
        print(f"{args.model_dir}: no model version")
        return 1 if args.verify else 0
    latest = store.latest_number()
    print(f"{'':1} {'version':>7} {'step':>8} {'epoch':>5} {'framework':10} "
          f"{'created (UTC)':19} {'files':>5}  metrics")
    broken = 0
    for number in numbers:
        version = store.open(number, verify=False)
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(version.created_ms / 1000))
        metrics = json.dumps(dict(version.metrics), sort_keys=True) if version.metrics else ""
        mark = "*" if number == latest else ""
        line = (f"{mark:1} {number:>7} {version.step:>8} {version.epoch:>5} "
                f"{version.framework or '-':10} {created:19} {len(version.files):>5}  {metrics}")
        if args.verify:
            try:
                store.open(number, verify=True)
                line += "  ok"
            except (TornModelError, OSError) as exc:
                broken += 1
                line += f"  BROKEN: {exc}"
        print(line)
    print(f"{len(numbers)} version(s); * = LATEST")
    return 1 if broken else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("models", help="list the versions of a model directory "
                            "(ModelStore) and optionally verify their checksums")
    parser.add_argument("model_dir", help="the model directory (TorchConfig/TFConfig model_dir)")
    parser.add_argument("--verify", action="store_true",
                        help="re-check every file against its manifest's SHA-256")
    parser.set_defaults(func=list_models)
