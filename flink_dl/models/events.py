"""Training events: the rows a training job's output stream carries (framework-neutral)."""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa

#: One row per published model version (``kind="model"``), per reported metrics
#: (``"metrics"``) and per node-level event such as a ps node stopping (``"node"``);
#: ``attempt`` is the cluster attempt that wrote it (it rises on each restart).
EVENTS_SCHEMA = pa.schema([
    ("kind", pa.string()), ("rank", pa.int32()), ("epoch", pa.int32()), ("step", pa.int64()),
    ("version", pa.int32()), ("path", pa.string()), ("metrics", pa.string()),
    ("time_ms", pa.int64()), ("attempt", pa.int32()),
])


def event_columns(kind: str, *, rank: int, epoch: int, step: int, version: int | None = None,
                  path: str | None = None,
                  metrics: dict[str, Any] | None = None,
                  attempt: int = 0) -> dict[str, list[Any]]:
    """One event as the columns ``NodeContext.write`` takes."""
    return {
        "kind": [kind], "rank": [rank], "epoch": [epoch], "step": [step],
        "version": [version], "path": [path],
        "metrics": [json.dumps(metrics or {}, default=float)],
        "time_ms": [int(time.time() * 1000)], "attempt": [attempt],
    }
