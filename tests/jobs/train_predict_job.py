"""Job script for the standalone test of the README's train-then-predict pattern: train
with 2 PyTorch workers, then predict from the same environment (``flink run -py``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

import flink_dl
from flink_dl.pytorch import TorchConfig, predict, train

FEATURES = ["a", "b"]


def fit_line(ctx) -> None:
    """y = 3a - 2b + 1, learned by both ranks under DDP."""
    import torch

    torch.manual_seed(0)
    model = ctx.prepare_model(torch.nn.Linear(2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = ctx.dataloader(64, features=FEATURES, label="y")
    for epoch in range(ctx.epochs):
        for batch in loader:
            loss = torch.nn.functional.mse_loss(model(batch["features"]).squeeze(1),
                                                batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        ctx.report(epoch=epoch, loss=loss.item())
    ctx.save_model(model, torchscript=True)


def rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.uniform(-1, 1, size=(n, 2)).astype(np.float32), columns=FEATURES)
    frame["y"] = (3 * frame.a - 2 * frame.b + 1).astype(np.float32)
    frame.insert(0, "id", np.arange(n, dtype=np.int64))
    return frame


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    config = TorchConfig(world_size=2, entry=fit_line, epochs=30,
                         model_dir=str(out / "models"))
    train(env, t_env.from_pandas(rows(512, seed=0)), config)
    # Flink's job id of the training job is the cluster's (README: flink-dl cleanup <id>).
    from flink_dl.flink.clusters import cluster_configs_of

    (job_id,) = [c.job_id for c in cluster_configs_of(env)]
    outcome = flink_dl.execute(env, "train (standalone)", timeout_s=240)
    scored = predict(t_env.from_pandas(rows(40, seed=1)), str(out / "models"),
                     features=FEATURES, outputs={"prediction": pa.float32()})
    frame = scored.to_pandas()  # a second job from the same environment
    # And a third, the DataStream way.
    collected = list(t_env.to_data_stream(predict(
        t_env.from_pandas(rows(8, seed=2)), str(out / "models"), features=FEATURES,
        outputs={"prediction": pa.float32()})).execute_and_collect())
    (out / "result.json").write_text(json.dumps({
        "train_flink_job_id": outcome.job_id, "cluster_job_id": job_id,
        "ids": frame["id"].tolist(), "y": frame["y"].tolist(),
        "prediction": frame["prediction"].tolist(), "collected": len(collected),
        "collected_error": max(abs(r["prediction"] - r["y"]) for r in collected),
    }))


if __name__ == "__main__":
    main()
