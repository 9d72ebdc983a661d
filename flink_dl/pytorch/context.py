"""``TorchContext``: what a PyTorch training entry sees in each rank's process."""

from __future__ import annotations

import contextlib
import datetime
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset

from flink_dl.cluster.context import NodeContext
from flink_dl.errors import ConfigError
from flink_dl.models.events import EVENTS_SCHEMA
from flink_dl.models.store import ModelVersion
from flink_dl.pytorch.config import STATE_DICT_FILE, TORCHSCRIPT_FILE
from flink_dl.pytorch.data import rechunk, to_tensors
from flink_dl.pytorch.process_group import GroupInfo
from flink_dl.training.context import TrainingContext

__all__ = ["EVENTS_SCHEMA", "TensorLoader", "TorchContext"]

#: Suffix of a PyTorch checkpoint file (``ctx.checkpoints``).
CHECKPOINT_SUFFIX = "pt"
#: TCPStore key under which each rank leaves its share's row count (empty-input rule).
_ROWS_KEY = "flink_dl/rows/{rank}"


class TensorLoader(IterableDataset):
    """Each ``iter()`` is the next epoch of this rank's input, as dicts of tensors.

    Iterate one loader once per epoch, or make a new loader per epoch (``ctx.dataloader``
    inside the epoch loop): both read the next epoch (``TorchConfig.epochs`` in all). When
    the rank's model went through ``ctx.prepare_model``, each epoch runs inside DDP's
    ``Join``, so a rank that runs out of batches first shadows the others' collectives
    instead of hanging them (uneven shares are normal: Flink splits data by batch).
    """

    def __init__(self, ctx: TorchContext, batch_size: int, features: Sequence[str] | None,
                 label: str | None, columns: Sequence[str] | None, drop_last: bool,
                 max_batches: int | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.ctx = ctx
        self.batch_size = batch_size
        self.features = features
        self.label = label
        self.columns = columns
        self.drop_last = drop_last
        self.max_batches = max_batches
        self.dtype = dtype

    def skip_epochs(self, count: int) -> None:
        """Consume ``count`` epochs without training on them (resuming after a restart: the
        first epoch is still read from Flink, into this attempt's cache)."""
        node_input = self.ctx.node._node_input()
        for _ in range(min(count, node_input.epochs_left)):
            node_input.next_epoch().drain()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self.ctx.node._node_input().next_epoch()
        with _join(list(self.ctx._ddp)):
            for number, table in enumerate(rechunk(iter(epoch), self.batch_size,
                                                   self.drop_last)):
                if self.max_batches is not None and number >= self.max_batches:
                    break
                yield to_tensors(table, self.features, self.label, self.columns, self.dtype)


@contextlib.contextmanager
def _join(joinables: list[Any]) -> Iterator[None]:
    if not joinables:
        yield
        return
    from torch.distributed.algorithms.join import Join

    with Join(joinables):
        yield


class TorchContext(TrainingContext):
    """Handed to the training entry in each rank's process (a ``TrainingContext``).

    Attributes:
        rank / world_size / local_rank: this process's place in the process group.
        device: ``cuda:<local_rank>`` under nccl, else ``cpu``.
        backend: ``"gloo"`` or ``"nccl"``.
    """

    framework = "pytorch"
    config_name = "TorchConfig"

    def __init__(self, node: NodeContext, group: GroupInfo, options: dict[str, Any]) -> None:
        super().__init__(node, options)
        self.group = group
        self.rank = group.rank
        self.world_size = group.world_size
        self.local_rank = group.local_rank
        self.device = group.device
        self.backend = group.backend
        self._ddp: list[Any] = []
        if self.has_input and group.store is not None and self.world_size > 1:
            store = group.store
            self.node._node_input().on_first_pass_end = \
                lambda rows: store.set(_ROWS_KEY.format(rank=self.rank), str(rows))

    # ------------------------------------------------------------------ data
    def dataloader(self, batch_size: int, *, features: Sequence[str] | None = None,
                   label: str | None = None, columns: Sequence[str] | None = None,
                   drop_last: bool = False, max_batches: int | None = None,
                   dtype: torch.dtype = torch.float32) -> TensorLoader:
        """This rank's input as batches of ``batch_size`` rows: dicts of tensors.

        Args:
            features: numeric (or equal-length ARRAY) columns stacked into ``"features"``
                (``dtype``); ``label`` adds that column as ``"label"``. Default: the
                config's ``features``/``label``.
            columns: columns to hand over as tensors by name (default: all, when no
                ``features`` are given).
            max_batches: stop each epoch after this many batches.

        Raises ``ConfigError`` for a bad ``batch_size``, ``MissingColumnError`` /
        ``FeatureTypeError`` naming a column the input lacks or that is not numeric.
        """
        self._check_batch_size("dataloader", batch_size)
        features, label = self._feature_columns("dataloader", features, label, columns)
        if not self.has_input:
            raise ConfigError("dataloader: this rank has no input (train(env, input=None))")
        return TensorLoader(self, batch_size, features, label, columns, drop_last,
                            max_batches, dtype)

    # ------------------------------------------------------------------ model
    def prepare_model(self, model: torch.nn.Module, **ddp_kwargs: Any) -> torch.nn.Module:
        """Move ``model`` to ``device`` and wrap it in DistributedDataParallel (world > 1).

        The loader then joins uneven epochs for it (see ``TensorLoader``).
        """
        model = model.to(self.device)
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = DistributedDataParallel(model, device_ids=device_ids, **ddp_kwargs)
        self._ddp.append(ddp)
        return ddp

    def save_model(self, model: torch.nn.Module, *, step: int = 0, epoch: int | None = None,
                   metrics: dict[str, Any] | None = None,
                   torchscript: bool = False) -> ModelVersion | None:
        """Publish ``model`` as the next version in ``model_dir`` (rank 0; the others return
        ``None``): ``model.pt`` (state_dict) and, with ``torchscript=True``, ``model.ts``."""
        return super().save_model(model, step=step, epoch=epoch, metrics=metrics,
                                  torchscript=torchscript)

    def maybe_save_model(self, model: torch.nn.Module, *, step: int,
                         metrics: dict[str, Any] | None = None,
                         torchscript: bool = False) -> ModelVersion | None:
        """Publish a version when the export clock says so (see ``TrainingContext``)."""
        return super().maybe_save_model(model, step=step, metrics=metrics,
                                        torchscript=torchscript)

    def _write_model(self, model: Any, directory: Path, **write_options: Any) -> None:
        module = _unwrap(model)
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        torch.save(state, directory / STATE_DICT_FILE)
        if write_options.get("torchscript"):
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.save(torch.jit.script(module.cpu()), directory / TORCHSCRIPT_FILE)
            module.to(self.device)

    def _load_weights(self, model: Any, version: ModelVersion) -> None:
        state = torch.load(version.file(STATE_DICT_FILE), map_location="cpu",
                           weights_only=True)
        _unwrap(model).load_state_dict(state)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer | None = None, *, epoch: int,
                        step: int, **extra: Any) -> Path | None:
        """Write model + optimizer + epoch/step (+ ``extra``) as this job's newest
        checkpoint (``ctx.checkpoints``: atomic, fsynced, the newest ``keep_checkpoints``
        kept; rank 0 only, the others return ``None``)."""
        if not self.is_chief:
            return None
        state = {"model": _unwrap(model).state_dict(), "epoch": epoch, "step": step,
                 "optimizer": optimizer.state_dict() if optimizer is not None else None,
                 "extra": extra}
        path = self.checkpoints.write(lambda tmp: torch.save(state, tmp), step=step,
                                      attempt=self.attempt, suffix=CHECKPOINT_SUFFIX)
        self.log.info("rank 0: checkpoint at step %d (epoch %d): %s", step, epoch, path)
        return path

    def load_checkpoint(self, map_location: Any = None) -> dict[str, Any] | None:
        """This job's newest checkpoint (``model``/``optimizer``/``epoch``/``step``), or
        ``None``. Another job's checkpoints in the same ``model_dir`` are never read."""
        path = self.checkpoints.newest(CHECKPOINT_SUFFIX)
        if path is None:
            return None
        return torch.load(path, map_location=map_location or self.device, weights_only=True)

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
               loader: TensorLoader | None = None) -> tuple[int, int]:
        """Resume from this job's newest checkpoint (after a restart): load model (and
        optimizer) state and skip the finished epochs of ``loader``; with no checkpoint,
        warm-start from ``init_from`` if set. Returns ``(next_epoch, step)`` (``(0, 0)`` on
        a fresh start). Call on every rank, before training."""
        checkpoint = self.load_checkpoint(map_location="cpu")
        if checkpoint is None:
            self.warm_start(model)
            return 0, 0
        _unwrap(model).load_state_dict(checkpoint["model"])
        if optimizer is not None and checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
        next_epoch = int(checkpoint["epoch"]) + 1
        if loader is not None:
            loader.skip_epochs(next_epoch)
        self.log.info("rank %d attempt %d: resumed from the checkpoint of epoch %d step %d",
                      self.rank, self.attempt, checkpoint["epoch"], checkpoint["step"])
        return next_epoch, int(checkpoint["step"])

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        """Wait for every rank (no-op with one rank)."""
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()

    # ------------------------------------------------------------------ empty input
    def _input_is_empty(self) -> bool | None:
        own = super()._input_is_empty()
        if own is not None or not self.is_chief or self._own_first_pass_rows() is None:
            return own
        # Rank 0 read nothing: the input was empty only if every rank's share was.
        store = self.group.store
        if store is None:
            return None
        keys = [_ROWS_KEY.format(rank=r) for r in range(self.world_size) if r != self.rank]
        try:
            store.wait(keys, datetime.timedelta(
                seconds=float(self.options.get("setup_timeout_s") or 180.0)))
        except (RuntimeError, dist.DistStoreError):
            self.log.warning("rank 0 read no rows and could not learn the other ranks' "
                             "shares in time; publishing anyway")
            return None
        return all(int(store.get(k)) == 0 for k in keys)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(
        model.module, torch.nn.Module) else model
