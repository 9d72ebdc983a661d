"""W1-TF's no-framework limit: one plain ``tf.distribute`` worker (MultiWorkerMirroredStrategy,
its ``TF_CONFIG`` written by hand) reading its CSV files with pyarrow and fitting the W1 MLP
in Keras. Run as ``python -m bench.tf_w1_limit RANK PORTS OUT FILE...`` (PORTS: one per
worker, comma-separated); writes ``{"steps", "seconds", "read_s"}`` (data read -> fit done)
to OUT."""

from __future__ import annotations

import json
import os
import sys
import time

from bench.tf_workloads import GLOBAL_BATCH, fit_w1, read_numpy


def main(argv: list[str]) -> None:
    rank, ports, out, files = int(argv[0]), argv[1].split(","), argv[2], argv[3:]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": rank}})
    import tensorflow as tf  # after TF_CONFIG is set

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    started = time.perf_counter()
    x, y = read_numpy(files)
    read = time.perf_counter() - started
    # Keras takes a dataset's batch as the global batch and splits it across the workers,
    # as it does ctx.dataset's; the filter hides the known length, by which Keras would stop
    # after half the split batches (it counts steps before splitting)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH) \
        .filter(lambda *_: True)
    options = tf.data.Options()
    # each worker reads its own files: no further sharding (as ctx.dataset does)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    steps = fit_w1(tf, strategy, dataset.with_options(options))
    seconds = time.perf_counter() - started
    with open(out, "w") as handle:
        json.dump({"steps": steps, "seconds": seconds, "read_s": read}, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
