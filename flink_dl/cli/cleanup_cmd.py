"""``flink-dl cleanup JOB_ID ...``: remove what jobs left on this host (node processes,
work dirs, rendezvous scopes), e.g. after a client was killed mid-job."""

from __future__ import annotations

import argparse


def cleanup(args: argparse.Namespace) -> int:
    """Sweep the given jobs; print what was removed."""
    from flink_dl.flink.janitor import sweep

    result = sweep(args.job_ids, rendezvous_dir=args.rendezvous_dir)
    print(f"killed {result['killed']} node process group(s), removed {result['removed']} "
          f"dir(s) of job(s) {', '.join(args.job_ids)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("cleanup", help="kill node processes and remove work dirs and "
                            "rendezvous files that jobs left on this host")
    parser.add_argument("job_ids", nargs="+", metavar="JOB_ID",
                        help="ClusterConfig/TorchConfig/TFConfig job_id")
    parser.add_argument("--rendezvous-dir", default=None,
                        help="ClusterConfig.rendezvous_dir, if the job set one")
    parser.set_defaults(func=cleanup)
