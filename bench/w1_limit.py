"""W1's no-framework limit: one plain PyTorch rank (gloo DDP) reading its CSV files with
pyarrow and training the W1 MLP. Run as ``python -m bench.w1_limit RANK WORLD PORT OUT
FILE...``; writes ``{"rows", "seconds"}`` (data iterator creation -> last batch) to OUT."""

from __future__ import annotations

import datetime
import json
import sys
import time

import numpy as np
import pyarrow.csv as pacsv
import torch
import torch.distributed as dist

from bench.workloads import BATCH, CONVERT, FEATURES, train_steps, w1_model


def main(argv: list[str]) -> None:
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
            table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(
                column_names=[*FEATURES, "label"]), convert_options=CONVERT)
            x = np.stack([table.column(f).to_numpy() for f in FEATURES], axis=1)
            y = table.column("label").to_numpy()
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


if __name__ == "__main__":
    main(sys.argv[1:])
