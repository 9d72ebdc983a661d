"""Job script submitted with ``flink run -py`` by the standalone and multi-host tests: an
ML cluster of roles a:1, b:2, c:3 and no placement setting."""

from __future__ import annotations

import argparse

from pyflink.datastream import StreamExecutionEnvironment

import flink_dl
from tests import entries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--entry", default="record", choices=["record", "dial_peers"])
    args = parser.parse_args()
    env = StreamExecutionEnvironment.get_execution_environment()
    config = flink_dl.ClusterConfig(roles={"a": 1, "b": 2, "c": 3},
                                    entry=getattr(entries, args.entry),
                                    properties={"out": args.out}, job_id=args.job_id)
    flink_dl.add_cluster(env, config)
    env.execute("flink-dl six nodes (standalone)")


if __name__ == "__main__":
    main()
