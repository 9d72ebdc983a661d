"""The files of a published PyTorch model version: ``model.pt`` (its state_dict) and,
optionally, ``model.ts`` (TorchScript). Written by training nodes and by cold starts."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flink_dl.models.store import ModelStore, ModelVersion
from flink_dl.pytorch.config import STATE_DICT_FILE, TORCHSCRIPT_FILE


def write_module(module: torch.nn.Module, directory: Path, *, torchscript: bool) -> None:
    """``module``'s state_dict (on CPU) and, with ``torchscript``, its TorchScript into
    ``directory``; the module ends on the CPU."""
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save(state, directory / STATE_DICT_FILE)
    if torchscript:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(torch.jit.script(module.cpu()), directory / TORCHSCRIPT_FILE)


def publish_module(model_dir: str | os.PathLike[str], module: torch.nn.Module, *,
                   keep_versions: int | None = None, torchscript: bool = True,
                   metrics: Mapping[str, Any] | None = None) -> ModelVersion:
    """``module`` as the next version of the ``ModelStore`` at ``model_dir`` (step 0)."""
    store = ModelStore(model_dir, keep_versions)
    return store.publish(lambda directory: write_module(module, directory,
                                                        torchscript=torchscript),
                         framework="pytorch", metrics=metrics)
