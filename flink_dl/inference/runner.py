"""``ModelRunner``: runs a ``ModelHandler`` in an operator or a node process.

Loads the model once, splits large batches into ``handler.batch_size`` rows, and when the
handler follows a model directory, checks ``LATEST`` every ``poll_interval_s`` and swaps in a
new version (checksums verified; a version that fails to load is skipped and the current
model keeps serving). Every prediction is tagged with the version that made it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from flink_dl.errors import ModelOutputError
from flink_dl.inference.api import VERSION_COLUMN, ModelHandler
from flink_dl.inference.options import PredictOptions
from flink_dl.log import EveryFewSeconds
from flink_dl.models.store import ModelStore, ModelVersion
from flink_dl.startup import malloc_tuning

log = logging.getLogger(__name__)


class ModelRunner:
    """Serves ``handler``'s model in one process: ``open``, then ``predict`` per batch."""

    def __init__(self, handler: ModelHandler, poll_interval_s: float = 1.0,
                 model_wait_s: float = 300.0) -> None:
        self.handler = handler
        self.poll_interval_s = poll_interval_s
        self.model_wait_s = model_wait_s
        self.model: Any = None
        self.version: ModelVersion | None = None
        self.store: ModelStore | None = None
        self._last_poll = 0.0
        self.rows = 0
        self.reloads = 0
        self._swaps = EveryFewSeconds(log)

    @classmethod
    def of(cls, handler: ModelHandler, options: PredictOptions) -> ModelRunner:
        """A runner of ``handler`` with the ``PredictOptions`` it reads."""
        return cls(handler, options.poll_interval_s, options.model_wait_s)

    def open(self) -> None:
        malloc_tuning.apply()  # the batch loop reuses freed memory instead of faulting it in
        self.handler.setup()
        model_dir = self.handler.model_dir()
        if model_dir is None:
            self.model = self.handler.load(None)
            return
        self.store = ModelStore(model_dir)
        self.version = self.store.wait_for_version(self.model_wait_s)
        self.model = self.handler.load(self.version)
        self._last_poll = time.monotonic()
        log.info("serving model version %d from %s", self.version.version, model_dir)

    def maybe_reload(self) -> None:
        if self.store is None or time.monotonic() - self._last_poll < self.poll_interval_s:
            return
        self._last_poll = time.monotonic()
        latest = self.store.latest_number()
        if latest is None or self.version is None or latest == self.version.version:
            return
        try:
            version = self.store.open(latest)
            model = self.handler.load(version)
        except Exception as exc:  # keep serving the current version
            log.warning("model version %d could not be loaded, keeping version %d: %s",
                        latest, self.version.version, exc)
            return
        self.model, self.version = model, version
        self.reloads += 1
        self._swaps.log("now serving model version %d", version.version)

    def predict(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs (and ``model_version``) for one batch of feature columns."""
        self.maybe_reload()
        rows = len(next(iter(columns.values()))) if columns else 0
        size = max(1, self.handler.batch_size)
        parts = []
        for start in range(0, rows, size):
            chunk = {k: v[start:start + size] for k, v in columns.items()} \
                if rows > size else columns
            parts.append(self._run(chunk))
        if not parts:
            parts.append({k: np.empty(0) for k in self.handler.outputs})
        out = {k: (np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k])
               for k in self.handler.outputs}
        if self.store is not None:
            assert self.version is not None
            out[VERSION_COLUMN] = np.full(rows, self.version.version, dtype=np.int32)
        self.rows += rows
        return out

    def _run(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_batch(self.handler, self.model, columns)


def run_batch(handler: ModelHandler, model: Any,
              columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``handler.run`` on one batch (padded to ``batch_size`` rows when the handler is
    ``batch_invariant``), checked to give every output column."""
    rows = len(next(iter(columns.values()))) if columns else 0
    pad = handler.batch_size - rows if handler.batch_invariant else 0
    if pad > 0:  # the same batch shape every call: the same kernels, the same rounding
        columns = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), dtype=v.dtype)])
                   for k, v in columns.items()}
    result = handler.run(model, columns)
    missing = [k for k in handler.outputs if k not in result]
    if missing:
        raise ModelOutputError(f"the model handler returned no column(s) {missing}; it returned "
                               f"{list(result)}")
    return {k: np.asarray(result[k])[:rows] if pad > 0 else np.asarray(result[k])
            for k in handler.outputs}
