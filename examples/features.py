"""Features straight from Flink SQL: DECIMAL, BOOLEAN and TINYINT columns, a loader per epoch.

A bare ``CASE WHEN city = 'a' THEN 1.0 ELSE 0.0 END`` is a ``DECIMAL(2, 1)`` in Flink, a
comparison is a ``BOOLEAN``: both are features as they are (cast to float32 on the way to
the tensor), declared on the config so that a wrong column fails when the job is built.
Each of 2 ranks builds its loader anew every epoch (the Ray Train habit), builds no DDP
model at all, and the ranks solve least squares together with two all-reduces; rank 0
publishes the fitted ``nn.Linear``, which ``predict`` then serves on the same SQL view.

Run: ``python examples/features.py`` (embedded Flink, about a minute).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

import flink_dl
from flink_dl.models.store import ModelStore
from flink_dl.pytorch import TorchConfig, predict, train

FEATURES = ["city_a", "roomy", "rooms"]
HOUSES = """
    CREATE TEMPORARY VIEW houses AS
    SELECT CASE WHEN city = 'a' THEN 1.0 ELSE 0.0 END AS city_a,   -- DECIMAL(2, 1)
           rooms > 3 AS roomy,                                      -- BOOLEAN
           CAST(rooms AS TINYINT) AS rooms,                         -- TINYINT
           price
    FROM listings
"""
#: The price the data follows: 100 + 50 (city a) + 30 (more than 3 rooms) + 20 a room + noise.
TRUE_COEF = {"bias": 100.0, "city_a": 50.0, "roomy": 30.0, "rooms": 20.0}
NOISE = 2.0


def least_squares(ctx: Any) -> None:
    """Every rank: accumulate X'X and X'y over its share, each epoch from a new loader; the
    ranks sum them (all-reduce), solve, and rank 0 publishes the model."""
    import torch
    import torch.distributed as dist

    rows_per_epoch = []
    for _ in range(ctx.epochs):
        xtx = torch.zeros(4, 4, dtype=torch.float64)
        xty = torch.zeros(4, dtype=torch.float64)
        rows = torch.zeros(1, dtype=torch.float64)
        for batch in ctx.dataloader(512):                  # features/label from the config
            x = torch.cat([torch.ones(len(batch["features"]), 1), batch["features"]], 1)
            x = x.double()
            xtx += x.T @ x
            xty += x.T @ batch["label"].double()
            rows += len(x)
        for total in (xtx, xty, rows):
            dist.all_reduce(total)                         # a collective, no DDP model
        rows_per_epoch.append(int(rows.item()))
    coef = torch.linalg.solve(xtx, xty)
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.bias.copy_(coef[:1])
        model.weight.copy_(coef[1:].unsqueeze(0))
    ctx.report(epoch=ctx.epochs - 1, rows=rows_per_epoch[-1])
    ctx.save_model(model, torchscript=True, metrics={"rows_per_epoch": rows_per_epoch,
                                   "coef": [round(float(c), 3) for c in coef]})


def raw_rows(count: int = 6000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["a", "b", "c"], size=count)
    rooms = rng.integers(1, 7, size=count)
    price = (TRUE_COEF["bias"] + TRUE_COEF["city_a"] * (city == "a")
             + TRUE_COEF["roomy"] * (rooms > 3) + TRUE_COEF["rooms"] * rooms
             + rng.normal(0, NOISE, size=count))
    return pd.DataFrame({"city": city, "rooms": rooms.astype("int32"), "price": price})


def main(model_dir: str, rows: int = 6000, epochs: int = 3) -> dict[str, Any]:
    """Train on the SQL features, then predict on them; returns what happened."""
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    t_env.create_temporary_view("listings", t_env.from_pandas(raw_rows(rows)))
    t_env.execute_sql(HOUSES)
    train(env, t_env.from_path("houses"), TorchConfig(
        world_size=2, entry=least_squares, epochs=epochs, model_dir=model_dir,
        features=FEATURES, label="price", env={"OMP_NUM_THREADS": "1"}))
    flink_dl.execute(env, "features: least squares", timeout_s=600)
    version = ModelStore(model_dir).open()
    scored = predict(t_env.from_path("houses"), model_dir, features=FEATURES,
                     outputs={"predicted": pa.float32()}).to_pandas()
    rmse = float(np.sqrt(np.mean((scored["predicted"] - scored["price"]) ** 2)))
    return {"metrics": dict(version.metrics), "rmse": rmse, "scored_rows": len(scored),
            "model_versions": sorted(set(scored["model_version"]))}


if __name__ == "__main__":
    flink_dl.use_jvm_archive()  # before the first gateway JVM: faster start-up
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="features-"))
    print(f"fitted coefficients (bias, city_a, roomy, rooms): {result['metrics']['coef']} "
          f"(true: {list(TRUE_COEF.values())})")
    print(f"rows per epoch over both ranks: {result['metrics']['rows_per_epoch']}")
    print(f"prediction RMSE on {result['scored_rows']} rows: {result['rmse']:.3f} "
          f"(noise {NOISE})")
