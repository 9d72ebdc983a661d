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
