"""``flink-dl`` command line: ``cluster-demo`` (an ML cluster on the embedded Flink),
``models DIR`` (a model directory's versions), ``cleanup JOB_ID`` (what a job left on this
host), ``jvm-archive`` (a class archive that makes Flink start faster). The PyTorch demo
is ``examples/digits.py``, the README's demo command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from flink_dl.cli import cleanup_cmd, jvm_archive_cmd, models_cmd


def demo(args: argparse.Namespace) -> int:
    """Run a small multi-role ML cluster on the embedded Flink and print what each node saw."""
    from pyflink.datastream import StreamExecutionEnvironment

    import flink_dl
    from flink_dl.cli.demo_entries import describe_node

    flink_dl.use_jvm_archive()  # before the gateway JVM starts: faster start-up
    env = StreamExecutionEnvironment.get_execution_environment()
    config = flink_dl.ClusterConfig(
        roles={"worker": args.workers, "ps": 1}, daemon_roles={"ps"}, entry=describe_node,
        name="demo",
    )
    outcomes = flink_dl.add_cluster(env, config)
    log = logging.getLogger("flink_dl.demo")
    log.info("job %s: AM + %d workers + 1 ps on the embedded Flink mini-cluster",
             config.job_id, args.workers)
    started = time.monotonic()
    records = []
    with outcomes.execute_and_collect("flink-dl demo") as results:
        for record in results:
            records.append(json.loads(record))
    wall = time.monotonic() - started
    am = next(r for r in records if r["kind"] == "am")
    print(f"\nML cluster {am['job_id']} ended {am['state']} in {wall:.1f}s")
    print(f"cluster spec: {json.dumps(am['cluster_spec'])}")
    timing = am["timing"]
    if "all_running" in timing:
        print(f"AM start -> all nodes RUNNING: {timing['all_running'] - timing['am_started']:.2f}s")
    for r in sorted((r for r in records if r["kind"] == "node"),
                    key=lambda r: (r["role"], r["index"])):
        print(f"  {r['role']}:{r['index']} {r['state']:8s} {json.dumps(r['result'])}")
    return 0 if am["state"] == "FINISHED" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flink-dl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("cluster-demo", help="run a worker:N + ps:1 ML cluster on the "
                            "embedded Flink mini-cluster and show what each node saw")
    p_demo.add_argument("--workers", type=int, default=2)
    p_demo.set_defaults(func=demo)
    models_cmd.add_parser(sub)
    cleanup_cmd.add_parser(sub)
    jvm_archive_cmd.add_parser(sub)
    args = parser.parse_args(argv)
    from flink_dl.log import configure_logging

    configure_logging()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
