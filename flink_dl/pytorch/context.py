"""``TorchContext``: what a PyTorch training entry sees in each rank's process."""

from __future__ import annotations

import contextlib
import datetime
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
from flink_dl.pytorch.config import STATE_DICT_FILE, TorchOptions
from flink_dl.pytorch.data import rechunk, to_tensors
from flink_dl.pytorch.process_group import GroupInfo
from flink_dl.training.checkpoints import checkpoint_name
from flink_dl.training.context import TrainingContext
from flink_dl.training.exactly_once import (
    OFFERED_STEPS,
    ExactlyOnceError,
    RankPositions,
    common_restore_point,
    decode_key,
    no_restore_point,
    rechunk_tracked,
)

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
        self._read_at_start = 0
        self._rows_yielded = 0

    def caught_up(self) -> bool:
        """Whether every row that has reached this rank was handed out and none waits in
        its channel: a streaming entry has learned all there is for now (the moment to
        publish, ``maybe_save_model(..., now=True)``)."""
        node_input = self.ctx.node.node_input()
        return node_input.rows_read - self._read_at_start <= self._rows_yielded \
            and not node_input.waiting()

    def skip_epochs(self, count: int) -> None:
        """Consume ``count`` epochs without training on them (resuming after a restart: the
        first epoch is still read from Flink, into this attempt's cache)."""
        node_input = self.ctx.node.node_input()
        for _ in range(min(count, node_input.epochs_left)):
            node_input.next_epoch().drain()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        node_input = self.ctx.node.node_input()
        epoch = node_input.next_epoch()
        self._read_at_start, self._rows_yielded = node_input.rows_read, 0
        with _join(list(self.ctx._ddp)):
            if self.ctx.exactly_once:
                tables = rechunk_tracked(iter(epoch), lambda: node_input.last_frame,
                                         self.batch_size, self.drop_last)
            else:
                tables = ((t, None) for t in rechunk(iter(epoch), self.batch_size,
                                                     self.drop_last))
            for number, (table, position) in enumerate(tables):
                if self.max_batches is not None and number >= self.max_batches:
                    break
                if position is not None:
                    self.ctx._delivered = position
                self._rows_yielded += table.num_rows
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

    options: TorchOptions

    def __init__(self, node: NodeContext, group: GroupInfo, options: TorchOptions) -> None:
        super().__init__(node, options)
        self.group = group
        self.rank = group.rank
        self.world_size = group.world_size
        self.local_rank = group.local_rank
        self.device = group.device
        self.backend = group.backend
        self._ddp: list[Any] = []
        #: Exactly-once training (``TorchConfig(exactly_once=True)``): where this rank's
        #: input stands after the last batch the loader handed out.
        self.exactly_once = options.exactly_once and self.has_input
        self._delivered = (0, 0)
        self._positions: RankPositions | None = None
        #: The ``extra`` of the checkpoint the last ``resume`` loaded (``{}`` after a fresh
        #: start): counters an entry keeps across restarts, e.g. samples trained on.
        self.restored_extra: dict[str, Any] = {}
        if self.has_input and group.store is not None and self.world_size > 1:
            store = group.store
            self.node.node_input().on_first_pass_end = \
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
                         metrics: dict[str, Any] | None = None, now: bool = False,
                         torchscript: bool = False) -> ModelVersion | None:
        """Publish a version when the export clock says so, or ``now`` when this step is
        not published yet (see ``TrainingContext``)."""
        return super().maybe_save_model(model, step=step, metrics=metrics, now=now,
                                        torchscript=torchscript)

    def write_model(self, model: Any, directory: Path, *, torchscript: bool = False,
                    **write_options: Any) -> None:
        """``model.pt`` (its state_dict) and, with ``torchscript=True``, ``model.ts``."""
        from flink_dl.pytorch.module_files import write_module

        module = _unwrap(model)
        write_module(module, directory, torchscript=torchscript)
        if torchscript:
            module.to(self.device)

    def load_weights(self, model: Any, version: ModelVersion) -> None:
        """The version's ``model.pt`` into ``model`` (unwrapped from DDP)."""
        state = torch.load(version.file(STATE_DICT_FILE), map_location="cpu",
                           weights_only=True)
        _unwrap(model).load_state_dict(state)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer | None = None, *, epoch: int,
                        step: int, **extra: Any) -> Path | None:
        """Write model + optimizer + epoch/step (+ ``extra``) as this job's newest
        checkpoint (``ctx.checkpoints``: atomic, fsynced, the newest ``keep_checkpoints``
        kept; rank 0 writes it and returns its path, the others return ``None``).

        Call it on every rank at the same step, after that step's optimizer update.
        Exactly-once training: each rank also records where its input stands (the rows
        the loader handed out so far), so a restart resumes from this step with exactly
        the rows it had not trained on.
        """
        path = None
        if self.is_chief:
            state = {"model": _unwrap(model).state_dict(), "epoch": epoch, "step": step,
                     "optimizer": optimizer.state_dict() if optimizer is not None else None,
                     "extra": extra}
            path = self.checkpoints.write(lambda tmp: torch.save(state, tmp), step=step,
                                          attempt=self.attempt, suffix=CHECKPOINT_SUFFIX)
            self.log.debug("rank 0: checkpoint at step %d (epoch %d): %s", step, epoch, path)
        if self.exactly_once:
            self._rank_positions().record(step, self._delivered,
                                          self.node.node_input().marks)
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
        a fresh start). Call on every rank, before training.

        Exactly-once training: the ranks agree on the newest checkpoint step every rank's
        restored input allows, load it, and the loader goes on with the rows after it;
        ``next_epoch`` is 0 (a stream has one epoch).

        The loaded checkpoint's ``extra`` (``save_checkpoint(..., **extra)``) is then
        ``ctx.restored_extra``: counts kept in it go on from the restored step.
        """
        if self.exactly_once:
            return self._resume_exactly_once(model, optimizer)
        checkpoint = self.load_checkpoint(map_location="cpu")
        if checkpoint is None:
            self.warm_start(model)
            return 0, 0
        _unwrap(model).load_state_dict(checkpoint["model"])
        if optimizer is not None and checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
        self.restored_extra = dict(checkpoint.get("extra") or {})
        next_epoch = int(checkpoint["epoch"]) + 1
        if loader is not None:
            loader.skip_epochs(next_epoch)
        self.log.info("rank %d attempt %d: resumed from the checkpoint of epoch %d step %d",
                      self.rank, self.attempt, checkpoint["epoch"], checkpoint["step"])
        return next_epoch, int(checkpoint["step"])

    # ------------------------------------------------------------------ exactly-once
    def _rank_positions(self) -> RankPositions:
        if self._positions is None:
            state_dir = (self.node.channels or {}).get("state_dir")
            if not state_dir:
                raise ExactlyOnceError("exactly-once training: this rank has no state "
                                       "directory (TorchConfig(exactly_once=True) sets it)")
            keep = self.options.keep_checkpoints + 2
            self._positions = RankPositions(state_dir, self.rank, self.world_size,
                                            self.attempt, self.group.store, keep)
        return self._positions

    def _resume_exactly_once(self, model: torch.nn.Module,
                             optimizer: torch.optim.Optimizer | None) -> tuple[int, int]:
        node_input = self.node.node_input()
        acked, sent = node_input.restore_range()
        positions = self._rank_positions()
        offers, acks = self._gather_offers(positions.offer(acked, sent), acked)
        key = common_restore_point(offers)
        if key is None:
            if any(acks):
                raise no_restore_point(acks, offers, self.config_name)
            # From scratch: what earlier attempts recorded belongs to no usable step (and
            # a checkpoint of a higher step would outrank the new ones).
            positions.discard_all()
            if self.is_chief:
                self.checkpoints.discard_after(0, -1, CHECKPOINT_SUFFIX)
            node_input.resume_at(0)
            self.warm_start(model)
            self.barrier()
            return 0, 0
        step, attempt = decode_key(key)
        position = positions.resume(key)
        path = self.checkpoints.path / checkpoint_name(step, attempt, CHECKPOINT_SUFFIX)
        if not path.is_file():
            raise ExactlyOnceError(f"exactly-once: the checkpoint of step {step} (attempt "
                                   f"{attempt}) that every rank recorded is gone: {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        _unwrap(model).load_state_dict(checkpoint["model"])
        if optimizer is not None and checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
        self.restored_extra = dict(checkpoint.get("extra") or {})
        if self.is_chief:
            self.checkpoints.discard_after(step, attempt, CHECKPOINT_SUFFIX)
        node_input.resume_at(position.seq, position.offset)
        self.barrier()  # no rank reads on before the chief has discarded later steps
        self.log.info("rank %d attempt %d: exactly-once resume at step %d (attempt %d): "
                      "input batch %d row %d", self.rank, self.attempt, step, attempt,
                      position.seq, position.offset)
        return 0, step

    def _gather_offers(self, offer: list[int], acked: int) -> tuple[list[list[int]],
                                                                    list[int]]:
        """Every rank's usable steps and restored ``acked`` (one all-gather)."""
        row = torch.full((OFFERED_STEPS + 1,), -1, dtype=torch.int64)
        row[0] = acked
        row[1:1 + len(offer)] = torch.tensor(offer, dtype=torch.int64)
        if self.world_size == 1 or not dist.is_initialized():
            rows = [row]
        else:
            row = row.to(self.device)
            rows = [torch.empty_like(row) for _ in range(self.world_size)]
            dist.all_gather(rows, row)
        values = [r.cpu().tolist() for r in rows]
        return [v[1:] for v in values], [int(v[0]) for v in values]

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        """Wait for every rank (no-op with one rank)."""
        if dist.is_initialized() and self.world_size > 1:
            dist.barrier()

    # ------------------------------------------------------------------ empty input
    def input_is_empty(self) -> bool | None:
        own = super().input_is_empty()
        if own is not None or not self.is_chief or self._own_first_pass_rows() is None:
            return own
        # Rank 0 read nothing: the input was empty only if every rank's share was.
        store = self.group.store
        if store is None:
            return None
        keys = [_ROWS_KEY.format(rank=r) for r in range(self.world_size) if r != self.rank]
        try:
            store.wait(keys, datetime.timedelta(seconds=self.options.timeouts.rendezvous))
        except (RuntimeError, dist.DistStoreError):
            self.log.warning("rank 0 read no rows and could not learn the other ranks' "
                             "shares in time; publishing anyway")
            return None
        return all(int(store.get(k)) == 0 for k in keys)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(
        model.module, torch.nn.Module) else model
