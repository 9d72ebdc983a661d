"""``TorchContext``: what a PyTorch training entry sees in each rank's process."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset

from flink_dl.cluster.context import NodeContext
from flink_dl.errors import ConfigError
from flink_dl.models.events import EVENTS_SCHEMA, event_columns
from flink_dl.models.store import ModelStore, ModelVersion, store_for
from flink_dl.pytorch.config import CHECKPOINT_DIR, STATE_DICT_FILE, TORCHSCRIPT_FILE
from flink_dl.pytorch.data import rechunk, to_tensors
from flink_dl.pytorch.process_group import GroupInfo

log = logging.getLogger("flink_dl.pytorch")

__all__ = ["EVENTS_SCHEMA", "TensorLoader", "TorchContext"]



class TensorLoader(IterableDataset):
    """Each ``iter()`` is one epoch of this rank's input as dicts of tensors.

    Re-iterate it once per epoch (``TorchConfig.epochs`` passes over a bounded input).
    When the rank's model went through ``ctx.prepare_model``, each epoch runs inside DDP's
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
        self._epochs = ctx.node.epochs()

    def skip_epochs(self, count: int) -> None:
        """Consume ``count`` epochs without training on them (resuming after a restart: the
        first epoch is still read from Flink, into this attempt's cache)."""
        for _ in range(count):
            try:
                epoch = next(self._epochs)
            except StopIteration:
                return
            for _ in epoch:
                pass

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        try:
            epoch = next(self._epochs)
        except StopIteration:
            raise RuntimeError(
                f"the input has only {self.ctx.epochs} epoch(s) (TorchConfig.epochs); "
                "iterate the loader once per epoch") from None
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


class TorchContext:
    """Handed to the training entry in each rank's process.

    Attributes:
        rank / world_size / local_rank: this process's place in the process group.
        device: ``cuda:<local_rank>`` under nccl, else ``cpu``.
        backend: ``"gloo"`` or ``"nccl"``.
        epochs: passes over the input (``TorchConfig.epochs``).
        properties: the job's string properties.
        node: the underlying ``NodeContext``.
    """

    def __init__(self, node: NodeContext, group: GroupInfo, options: dict[str, Any]) -> None:
        self.node = node
        self.group = group
        self.options = options
        self.rank = group.rank
        self.world_size = group.world_size
        self.local_rank = group.local_rank
        self.device = group.device
        self.backend = group.backend
        self.properties = node.properties
        #: The cluster attempt: 0, then +1 after each restart (failover).
        self.attempt = node.attempt
        self._ddp: list[Any] = []
        self._last_export = time.monotonic()
        self._last_export_step: int | None = None
        self._store: ModelStore | None = None

    # ------------------------------------------------------------------ data
    @property
    def epochs(self) -> int:
        return self.node.epochs_total

    @property
    def epoch(self) -> int:
        """The epoch being read (0-based)."""
        return self.node.epoch

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def dataloader(self, batch_size: int, *, features: Sequence[str] | None = None,
                   label: str | None = None, columns: Sequence[str] | None = None,
                   drop_last: bool = False, max_batches: int | None = None,
                   dtype: torch.dtype = torch.float32) -> TensorLoader:
        """This rank's input as batches of ``batch_size`` rows: dicts of tensors.

        Args:
            features: scalar (or equal-length list) columns stacked into ``"features"``
                (``dtype``); ``label`` adds that column as ``"label"``.
            columns: columns to hand over as tensors by name (default: all, when no
                ``features`` are given).
            max_batches: stop each epoch after this many batches.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
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

    @property
    def model_store(self) -> ModelStore:
        if self._store is None:
            self._store = store_for(self.options.get("model_dir"),
                                    self.options.get("keep_versions"), "TorchConfig")
        return self._store

    def save_model(self, model: torch.nn.Module, *, step: int = 0,
                   epoch: int | None = None, metrics: dict[str, Any] | None = None,
                   torchscript: bool = False) -> ModelVersion | None:
        """Publish ``model`` as the next version in ``model_dir`` (chief rank only; others
        return ``None``). Writes ``model.pt`` (state_dict) and, with ``torchscript=True``,
        ``model.ts``. The version also leaves the job in ``train``'s output stream."""
        if not self.is_chief:
            return None
        module = _unwrap(model)

        def write(directory: Path) -> None:
            state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            torch.save(state, directory / STATE_DICT_FILE)
            if torchscript:
                with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
                    warnings.simplefilter("ignore", DeprecationWarning)
                    torch.jit.save(torch.jit.script(module.cpu()), directory / TORCHSCRIPT_FILE)
                module.to(self.device)

        epoch = self.epoch if epoch is None else epoch
        version = self.model_store.publish(write, step=step, epoch=epoch, framework="pytorch",
                                           metrics=metrics)
        self._last_export = time.monotonic()
        self._last_export_step = step
        self._emit("model", epoch=epoch, step=step, version=version.version,
                   path=version.path, metrics=metrics)
        return version

    def maybe_save_model(self, model: torch.nn.Module, *, step: int,
                         metrics: dict[str, Any] | None = None,
                         torchscript: bool = False) -> ModelVersion | None:
        """Publish a version when ``export_every_steps`` steps or ``export_every_s`` seconds
        passed since the last one (streaming training calls this every step)."""
        every_steps = self.options.get("export_every_steps")
        every_s = self.options.get("export_every_s")
        if every_steps is None and every_s is None:
            raise ConfigError("maybe_save_model needs TorchConfig(export_every_steps=...) "
                              "or export_every_s")
        since = step - (self._last_export_step or 0)
        due = (every_steps is not None and since >= every_steps) or (
            every_s is not None and time.monotonic() - self._last_export >= every_s)
        if not due or step == self._last_export_step:
            return None
        return self.save_model(model, step=step, metrics=metrics, torchscript=torchscript)

    def save_checkpoint(self, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer | None = None, *, epoch: int,
                        step: int, **extra: Any) -> Path | None:
        """Write model + optimizer + epoch/step (+ ``extra``) to
        ``model_dir/checkpoints/ckpt-<step>.pt`` atomically (chief only)."""
        if not self.is_chief:
            return None
        directory = self.model_store.root / CHECKPOINT_DIR
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = {"model": _unwrap(model).state_dict(), "epoch": epoch, "step": step,
                 "optimizer": optimizer.state_dict() if optimizer is not None else None,
                 "extra": extra}
        path = directory / f"ckpt-{step:012d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        log.info("rank 0: checkpoint at step %d (epoch %d): %s", step, epoch, path)
        return path

    def load_checkpoint(self, map_location: Any = None) -> dict[str, Any] | None:
        """The newest checkpoint's dict (``model``/``optimizer``/``epoch``/``step``), or
        ``None`` when there is none."""
        directory = self.model_store.root / CHECKPOINT_DIR
        paths = sorted(directory.glob("ckpt-*.pt")) if directory.is_dir() else []
        if not paths:
            return None
        return torch.load(paths[-1], map_location=map_location or self.device,
                          weights_only=True)

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
               loader: TensorLoader | None = None) -> tuple[int, int]:
        """Resume from the newest checkpoint, if any: load model (and optimizer) state, skip
        the finished epochs of ``loader``; returns ``(next_epoch, step)`` (``(0, 0)`` on a
        fresh start). Call on every rank, before training, after a restart or not."""
        checkpoint = self.load_checkpoint(map_location="cpu")
        if checkpoint is None:
            return 0, 0
        _unwrap(model).load_state_dict(checkpoint["model"])
        if optimizer is not None and checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
        next_epoch = int(checkpoint["epoch"]) + 1
        if loader is not None:
            loader.skip_epochs(next_epoch)
        log.info("rank %d attempt %d: resumed from the checkpoint of epoch %d step %d",
                 self.rank, self.attempt, checkpoint["epoch"], checkpoint["step"])
        return next_epoch, int(checkpoint["step"])

    # ------------------------------------------------------------------ progress
    def report(self, *, step: int = 0, epoch: int | None = None, **metrics: Any) -> None:
        """Log progress (chief rank, or every rank at DEBUG) and send it out of the job."""
        epoch = self.epoch if epoch is None else epoch
        text = " ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
        log.log(logging.INFO if self.is_chief else logging.DEBUG,
                "rank %d epoch %d step %d %s", self.rank, epoch, step, text)
        self._emit("metrics", epoch=epoch, step=step, metrics=metrics)

    def barrier(self) -> None:
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()

    def _emit(self, kind: str, *, epoch: int, step: int, version: int | None = None,
              path: str | None = None, metrics: dict[str, Any] | None = None) -> None:
        self.node.write(event_columns(kind, rank=self.rank, epoch=epoch, step=step,
                                      version=version, path=path, metrics=metrics,
                                      attempt=self.attempt))


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(
        model.module, torch.nn.Module) else model


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
