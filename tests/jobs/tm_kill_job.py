"""Job script for the TaskManager-loss test: 2 resumable workers with restarts enabled."""

from __future__ import annotations

import argparse

from pyflink.datastream import StreamExecutionEnvironment

import flink_dl
from tests import ft_entries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--steps", default="25")
    args = parser.parse_args()
    env = StreamExecutionEnvironment.get_execution_environment()
    config = flink_dl.ClusterConfig(
        roles={"worker": 2}, entry=ft_entries.resumable_steps, job_id=args.job_id,
        properties={"out": args.out, "steps": args.steps},
        restart=flink_dl.RestartPolicy(attempts=5, delay_s=1.0),
        timeouts={"heartbeat_timeout": 5})
    flink_dl.add_cluster(env, config)
    env.execute("flink-dl TaskManager loss (standalone)")


if __name__ == "__main__":
    main()
