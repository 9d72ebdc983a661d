"""``flink-dl cleanup [JOB_ID ...]``: remove what jobs left on this host (node processes,
work dirs, rendezvous scopes), e.g. after a client was killed mid-job. Without a job id
(or with ``--orphans``): the leftovers of every job whose client is gone."""

from __future__ import annotations

import argparse


def cleanup(args: argparse.Namespace) -> int:
    """Sweep the given jobs, or the orphaned ones; print what was removed."""
    from flink_dl.flink.janitor import sweep, sweep_orphans

    if args.job_ids:
        result = sweep(args.job_ids, rendezvous_dir=args.rendezvous_dir)
        print(f"killed {result['killed']} node process group(s), removed {result['removed']} "
              f"dir(s) of job(s) {', '.join(args.job_ids)}")
    if args.orphans or not args.job_ids:
        orphans = sweep_orphans(rendezvous_dir=args.rendezvous_dir)
        for job_id, totals in sorted(orphans.items()):
            print(f"job {job_id} (its client is gone): killed {totals['killed']} "
                  f"process(es), removed {totals['removed']} dir(s)")
        if not orphans:
            print("no leftovers of jobs whose client is gone")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "cleanup", help="kill node processes and remove work dirs and rendezvous files that "
        "jobs left on this host; without JOB_ID, those of every job whose client is gone")
    parser.add_argument("job_ids", nargs="*", metavar="JOB_ID",
                        help="ClusterConfig/TorchConfig/TFConfig job_id (logged when the job "
                        "is submitted)")
    parser.add_argument("--orphans", action="store_true",
                        help="also (the default without JOB_ID) sweep every job whose client "
                        "or node operator process is gone")
    parser.add_argument("--rendezvous-dir", default=None,
                        help="ClusterConfig.rendezvous_dir, if the job set one")
    parser.set_defaults(func=cleanup)
