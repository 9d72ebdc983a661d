"""Job script for the multi-host cluster test: ``--parallelism`` flat_map subtasks, each
writing where it ran (hostname, pid, subtask index) to ``<out>/<subtask>-<value>.json``."""

from __future__ import annotations

import argparse

from pyflink.common import Types
from pyflink.datastream import FlatMapFunction, RuntimeContext, StreamExecutionEnvironment


class Where(FlatMapFunction):
    def __init__(self, out: str) -> None:
        self.out = out
        self.subtask = -1

    def open(self, runtime_context: RuntimeContext) -> None:
        self.subtask = runtime_context.get_index_of_this_subtask()

    def flat_map(self, value: int):  # type: ignore[no-untyped-def]
        import json
        import os
        import socket

        record = {"hostname": socket.gethostname(), "pid": os.getpid(),
                  "subtask": self.subtask, "value": value,
                  "test_host": os.environ.get("FDL_TEST_HOST")}
        path = os.path.join(self.out, f"{self.subtask}-{value}.json")
        with open(path + ".part", "w") as f:
            json.dump(record, f)
        os.replace(path + ".part", path)
        yield f"{record['hostname']} {self.subtask} {value}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--parallelism", type=int, default=4)
    args = parser.parse_args()
    env = StreamExecutionEnvironment.get_execution_environment()
    n = args.parallelism
    (env.from_collection(list(range(n)), type_info=Types.INT())
        .rebalance()
        .flat_map(Where(args.out), output_type=Types.STRING()).set_parallelism(n)
        .print().set_parallelism(n))
    env.execute("flink-dl multihost where")


if __name__ == "__main__":
    main()
