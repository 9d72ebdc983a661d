"""W1 with Ray Train + Ray Data, measured in the same bench run as flink-dl's W1.

Ray Data reads the same 8 CSV files (``ray.data.read_csv``, float32 columns), one
``map_batches`` stacks the 16 feature columns, and a ``TorchTrainer`` with 2 workers (gloo
DDP through ``prepare_model``, 1 torch thread each) trains the W1 MLP for one epoch on
``iter_torch_batches`` of 1024 rows. Ray gets 4 logical CPUs on the 2 cores: one per
training worker and two for Ray Data's tasks (with 2, the workers would leave the reads
none). Samples/s as for the other W1 rows: from creating the data iterator to the last
batch, both workers' rows over the slower worker's seconds. Wall: ``ray.init`` + ``fit``,
the whole of a user's job; ``init_s``: the ``ray.init`` part (Ray's processes starting).

Ray 2.60 needs pyarrow >= 17, which PyFlink's Beam does not allow, so this runs in its own virtual
environment (``.venv-ray``, made on first use by ``ray_python``):
``python -m bench.baselines.ray_w1 OUT FILE...`` writes ``{"samples_per_s", "wall_s",
"init_s", "rows"}``; ``run_ray`` runs it from the bench.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pacsv

from bench.drivers.venvs import own_python
from bench.workloads.data import (
    BATCH,
    CONVERT,
    FEATURES,
    WORKERS,
    csv_files,
    train_steps,
    w1_model,
)

#: Ray Data's tasks get these logical CPUs besides one per training worker.
DATA_CPUS = 2
#: Ray's virtual environment (repository root) and what goes in it.
RAY_VENV = Path(__file__).resolve().parents[2] / ".venv-ray"
RAY_PACKAGES = ("torch==2.13.0", "ray[train,data]==2.60.0")
log = logging.getLogger(__name__)


def stack_features(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data batch -> {"features": (rows, 16), "label": (rows,)}."""
    return {"features": np.stack([batch[f] for f in FEATURES], axis=1),
            "label": batch["label"]}


def train_loop(config: dict[str, Any]) -> None:
    import ray.train
    import torch
    from ray.train.torch import prepare_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = prepare_model(w1_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    shard = ray.train.get_dataset_shard("train")
    started = time.perf_counter()
    batches = shard.iter_torch_batches(batch_size=BATCH, dtypes=torch.float32)
    rows = train_steps(model, optimizer, ((b["features"], b["label"]) for b in batches))
    seconds = time.perf_counter() - started
    rank = ray.train.get_context().get_world_rank()
    Path(config["out_dir"], f"rank{rank}.json").write_text(
        json.dumps({"rows": rows, "seconds": seconds}))


def main(argv: list[str]) -> None:
    import ray
    import ray.data
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out, files = argv[0], argv[1:]
    repo = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        ray.init(num_cpus=WORKERS + DATA_CPUS, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": repo, "OMP_NUM_THREADS": "1"}},
                 log_to_driver=False)
        init = time.monotonic() - started
        try:
            dataset = ray.data.read_csv(
                files, read_options=pacsv.ReadOptions(column_names=[*FEATURES, "label"]),
                convert_options=CONVERT).map_batches(stack_features, batch_format="numpy")
            trainer = TorchTrainer(
                train_loop, train_loop_config={"out_dir": tmp},
                scaling_config=ScalingConfig(num_workers=WORKERS,
                                             resources_per_worker={"CPU": 1}),
                run_config=RunConfig(storage_path=tmp, name="w1"),
                datasets={"train": dataset})
            trainer.fit()
            wall = time.monotonic() - started
        finally:
            ray.shutdown()
        reports = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(WORKERS)]
    total = sum(r["rows"] for r in reports)
    Path(out).write_text(json.dumps({
        "samples_per_s": total / max(r["seconds"] for r in reports), "wall_s": wall,
        "init_s": init, "rows": total}))


def ray_python() -> Path:
    """The interpreter of Ray's virtual environment, made (about a minute, from the package
    registries) and filled when it lacks Ray."""
    return own_python(RAY_VENV.name, RAY_PACKAGES, "ray, ray.train, ray.data, torch")


def run_ray(rows: int, python: Path) -> dict[str, Any]:
    """W1 with Ray Train + Ray Data (this module's ``main``) run by Ray's ``python``; a
    failed run gives ``{"error": ...}`` instead of ending the table."""
    files = [str(p) for p in csv_files(rows)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "ray.json")
        try:
            subprocess.run([str(python), "-m", "bench.baselines.ray_w1", str(out), *files],
                           check=True, timeout=900, cwd=RAY_VENV.parent,
                           start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            result = json.loads(out.read_text())
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning("Ray Train + Ray Data failed: %s", exc)
            return {"error": f"failed: {type(exc).__name__}"}
    # Ray's equal split may drop a few rows to give both workers as many
    if not rows - WORKERS * BATCH <= result["rows"] <= rows:
        return {"error": f"trained on {result['rows']} rows, not {rows}"}
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
