"""Job script submitted with ``flink run -py`` by the standalone-cluster test."""

from __future__ import annotations

import argparse

from pyflink.datastream import StreamExecutionEnvironment

import flink_dl
from tests import entries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--job-id", required=True)
    args = parser.parse_args()
    env = StreamExecutionEnvironment.get_execution_environment()
    config = flink_dl.ClusterConfig(roles={"a": 1, "b": 2, "c": 3}, entry=entries.record,
                                    properties={"out": args.out}, job_id=args.job_id)
    flink_dl.add_cluster(env, config)
    env.execute("flink-dl six nodes (standalone)")


if __name__ == "__main__":
    main()
