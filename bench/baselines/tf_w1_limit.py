"""W1-TF's no-framework limit: one plain ``tf.distribute`` worker (MultiWorkerMirroredStrategy,
its ``TF_CONFIG`` written by hand) reading its CSV files with pyarrow and fitting the W1 MLP
in Keras. Run as ``python -m bench.baselines.tf_w1_limit RANK PORTS OUT FILE...`` (PORTS:
one per worker, comma-separated); writes ``{"steps", "seconds", "read_s"}`` (data read ->
fit done) to OUT. ``run_limit`` runs the workers from the bench."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from bench.drivers.cpu_breakdown import CpuSampler
from bench.drivers.processes import free_ports, read_reports, run_all
from bench.workloads.data import csv_files
from bench.workloads.tf_models import (
    GLOBAL_BATCH,
    THREAD_ENV,
    WORKERS,
    cpu_noise,
    fit_w1,
    read_numpy,
    worker_rates,
)


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


def run_limit(rows: int) -> dict[str, float]:
    """Both workers, each on its half of the files: ``worker_rates`` and ``cpu_noise``."""
    files = [str(p) for p in csv_files(rows)]
    ports = ",".join(str(port) for port in free_ports(WORKERS))
    with tempfile.TemporaryDirectory() as tmp:
        outs = [f"{tmp}/worker{rank}.json" for rank in range(WORKERS)]
        with CpuSampler() as sampler:
            started = time.monotonic()
            run_all([[sys.executable, "-m", "bench.baselines.tf_w1_limit", str(rank), ports,
                      outs[rank], *files[rank::WORKERS]] for rank in range(WORKERS)],
                    {**os.environ, **THREAD_ENV}, "limit worker")
        wall = time.monotonic() - started
        reports = read_reports(outs)
    return worker_rates(reports, wall) | cpu_noise(sampler)


if __name__ == "__main__":
    main(sys.argv[1:])
