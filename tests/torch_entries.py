"""PyTorch training entries used by the integration tests (pickled by value into the job)."""

from __future__ import annotations

import json
from pathlib import Path


def uneven(ctx) -> None:
    """Rank 1 stops each epoch after 2 batches while rank 0 reads all of its share: DDP must
    not hang. Each rank records its steps and final weights."""
    import torch

    torch.manual_seed(0)
    model = ctx.prepare_model(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = ctx.dataloader(16, features=["a", "b", "c", "d"], label="y",
                            max_batches=2 if ctx.rank == 1 else None)
    steps = 0
    for _ in range(ctx.epochs):
        for batch in loader:
            loss = torch.nn.functional.mse_loss(model(batch["features"]).squeeze(1),
                                                batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    out = Path(ctx.properties["out"])
    torch.save(model.module.state_dict(), out / f"weights-{ctx.rank}.pt")
    (out / f"steps-{ctx.rank}.json").write_text(json.dumps({"steps": steps}))


def prewarm_probe(ctx) -> None:
    """Records how the rank's process started (``--prewarm`` in its argv), which
    environment it ended up with, and how many rows and which row sum it read."""
    import os
    import sys

    import torch

    model = ctx.prepare_model(torch.nn.Linear(4, 1))
    rows, total = 0, 0.0
    for batch in ctx.dataloader(64, features=["a", "b", "c", "d"], label="y"):
        rows += len(batch["label"])
        total += float(batch["label"].double().sum())
        model(batch["features"]).sum().backward()
    (Path(ctx.properties["out"]) / f"rank-{ctx.rank}.json").write_text(json.dumps({
        "argv": sys.argv, "rows": rows, "sum": total, "cwd": os.getcwd(),
        "job": os.environ.get("FLINK_DL_JOB_ID"), "marker": os.environ.get("PREWARM_TEST"),
        "modules_env": os.environ.get("FLINK_DL_PREWARM_MODULES")}))
