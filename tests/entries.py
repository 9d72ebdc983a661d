"""Node entries used by the integration tests (pickled by value into the job)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flink_dl import NodeContext


def record(ctx: NodeContext) -> dict:
    """Write what this node sees to ``<out>/<role>-<index>.json`` and return a summary."""
    seen = {
        "role": ctx.role, "index": ctx.index, "cluster_spec": ctx.cluster_spec,
        "properties": ctx.properties, "job_id": ctx.job_id, "attempt": ctx.attempt,
        "pid": os.getpid(), "port": ctx.port, "work_dir": ctx.work_dir,
        "env_marker": os.environ.get("TEST_MARKER"),
        "env_role": os.environ.get("FLINK_DL_ROLE"),
    }
    out = Path(ctx.properties["out"]) / f"{ctx.role}-{ctx.index}.json"
    out.write_text(json.dumps(seen))
    return {"role": ctx.role, "index": ctx.index}


def boom_on_b1(ctx: NodeContext) -> None:
    """b:1 raises ValueError('boom') after a moment; every other node runs until stopped."""
    record(ctx)
    if (ctx.role, ctx.index) == ("b", 1):
        time.sleep(0.5)
        raise ValueError("boom")
    ctx.wait_for_stop(timeout=120)


def worker_or_daemon(ctx: NodeContext) -> None:
    """Workers finish after a moment; the daemon role waits for the AM's stop and says so."""
    record(ctx)
    out = Path(ctx.properties["out"])
    if ctx.role == "ps":
        stopped = ctx.wait_for_stop(timeout=120)
        (out / f"ps-{ctx.index}.stopped").write_text(str(stopped))
        return
    time.sleep(1.0)
