"""Job script submitted with ``flink run -py`` by the standalone and multi-host tests: an
ML cluster of roles a:1, b:2, c:3 and no placement setting."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    outcomes = flink_dl.add_cluster(env, config)
    with outcomes.execute_and_collect("flink-dl six nodes") as results:
        records = [json.loads(r) for r in results]
    # The AM's summary (its timings are the startup benchmark's figures).
    am = [r for r in records if r.get("kind") == "am"]
    Path(args.out, "am-summary.jsonl").write_text(json.dumps(am))


if __name__ == "__main__":
    main()
