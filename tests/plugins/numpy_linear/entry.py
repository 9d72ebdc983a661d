"""``LinearEntry`` (the node entry) and ``train`` (the job), plus ``least_squares``, the
training function a user of the plugin would write."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.cluster.context import NodeContext
from flink_dl.training import TrainingEntry, build, teardown

from .config import LinearConfig, LinearOptions
from .context import LinearContext


class LinearEntry(TrainingEntry):
    """The context up, the user's entry, the all-reduce connections down."""

    @contextlib.contextmanager
    def session(self, node: NodeContext) -> Iterator[Any]:
        options = self.options
        assert isinstance(options, LinearOptions)
        ctx = LinearContext(node, options)
        try:
            yield ctx
        finally:
            teardown(ctx.reducer.close, "closing the all-reduce connections")


def train(env: StreamExecutionEnvironment, input: Table | DataStream | None,
          config: LinearConfig) -> DataStream:
    """Add the numpy training cluster to ``env``; returns its events."""
    workers, _ = build(env, input, config, LinearEntry)
    return workers


def least_squares(ctx: LinearContext) -> dict[str, Any]:
    """Linear least squares by all-reduce: every worker sums ``[X 1]^T [X 1]`` and
    ``[X 1]^T y`` over its share, one all-reduce adds them up, every worker solves the
    normal equations (plus ``ridge``) and the chief publishes the weights."""
    width = len(ctx.features or []) + 1
    gram, moment, rows = np.zeros((width, width)), np.zeros(width), 0
    for x, y in ctx.batches(int(ctx.properties.get("batch_size", "256"))):
        design = np.hstack([x, np.ones((len(x), 1))])
        gram += design.T @ design
        moment += design.T @ y
        rows += len(y)
    total = ctx.allreduce(np.concatenate([gram.ravel(), moment, [rows]]))
    ctx.rows_total = int(total[-1])
    penalty = ctx.options.ridge * np.eye(width)
    penalty[-1, -1] = 0.0  # the intercept is not penalised
    weights = np.linalg.solve(total[:width * width].reshape(width, width) + penalty,
                              total[width * width:-1])
    ctx.report(step=1, rows=rows, rows_total=ctx.rows_total)
    ctx.save_model(weights, step=1)
    return {"rank": ctx.rank, "rows": rows}
