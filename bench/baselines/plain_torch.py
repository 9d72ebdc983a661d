"""W3's baseline: plain PyTorch over in-memory batches, one thread, one process."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from bench.workloads.data import INFER_BATCH, w3_model


def plain_torch(x: np.ndarray, model_path: Path) -> float:
    """Rows/s of the model over ``x`` in batches of 4096, one thread, one process."""
    torch.set_num_threads(1)
    model = w3_model()
    model.load_state_dict(torch.load(model_path))
    model.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(x), INFER_BATCH):
            model(torch.from_numpy(x[start:start + INFER_BATCH]))
    return len(x) / (time.perf_counter() - started)
