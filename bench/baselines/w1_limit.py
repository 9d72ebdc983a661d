"""W1's no-framework limit: one plain PyTorch rank (gloo DDP) reading its CSV files with
pyarrow and training the W1 MLP. Run as ``python -m bench.baselines.w1_limit RANK WORLD
PORT OUT FILE...``; writes ``{"rows", "seconds"}`` (data iterator creation -> last batch)
to OUT. ``run_limit`` runs the ranks from the bench."""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
import time

from bench.drivers.processes import free_ports, read_reports, run_all
from bench.workloads.data import (
    BATCH,
    WORKERS,
    csv_files,
    read_part,
    train_steps,
    w1_model,
)


def main(argv: list[str]) -> None:
    import torch
    import torch.distributed as dist

    rank, world, port, out, files = int(argv[0]), int(argv[1]), int(argv[2]), argv[3], argv[4:]
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, world, rank == 0,
                          timeout=datetime.timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(w1_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    dist.barrier()
    started = time.perf_counter()

    def batches():
        for path in files:
            x, y = read_part(path)
            for start in range(0, len(y), BATCH):
                yield torch.from_numpy(x[start:start + BATCH]), \
                    torch.from_numpy(y[start:start + BATCH])

    from torch.distributed.algorithms.join import Join

    with Join([model]):
        rows = train_steps(model, optimizer, batches())
    seconds = time.perf_counter() - started
    with open(out, "w") as handle:
        json.dump({"rows": rows, "seconds": seconds}, handle)
    dist.destroy_process_group()


def run_limit(rows: int) -> dict[str, float]:
    """Both ranks, each on its half of the files: samples/s (both ranks' rows over the
    slower rank's seconds) and the wall seconds of the two processes."""
    files = [str(p) for p in csv_files(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        (port,) = free_ports(1)
        outs = [f"{tmp}/rank{rank}.json" for rank in range(WORKERS)]
        started = time.monotonic()
        run_all([[sys.executable, "-m", "bench.baselines.w1_limit", str(rank), str(WORKERS),
                  str(port), outs[rank], *files[rank::WORKERS]] for rank in range(WORKERS)],
                {**os.environ, "OMP_NUM_THREADS": "1"}, "limit rank")
        wall = time.monotonic() - started
        reports = read_reports(outs)
    total = sum(r["rows"] for r in reports)
    return {"samples_per_s": total / max(r["seconds"] for r in reports), "wall_s": wall}


if __name__ == "__main__":
    main(sys.argv[1:])
