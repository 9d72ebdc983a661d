"""One knob for streaming inference latency: ``predict(..., max_latency_ms=...)``.

Where a row waits between its arrival and its prediction, and what the budget sets:

* **Network buffers** between Flink tasks flush when full or after the buffer timeout
  (100 ms by default): ``execution.buffer-timeout.interval`` = budget / 10.
* **The Python bundle**: rows go to the Python worker in Arrow batches, and results come
  back when the bundle finishes, after ``python.fn-execution.bundle.size`` rows or
  ``bundle.time`` ms (1 s by default). Deadline-aware micro-batching: a bundle (and its
  Arrow batch) ends as soon as it holds one full model batch (``handler.batch_size`` rows:
  no waiting at high rates) or when its oldest row has waited budget / 4 (no waiting past
  the deadline at low rates).

Without a budget, ``predict`` keeps its throughput settings (large Arrow batches; the
bundle time Flink defaults to), which suit bounded, offline scoring.
"""

from __future__ import annotations

import logging

from pyflink.table import StreamTableEnvironment

from flink_dl.flink.pyflink_adapter import j_exec_env_of_table_env

log = logging.getLogger(__name__)

#: Share of the budget a row may wait in a network buffer.
BUFFER_SHARE = 10
#: Share of the budget a row may wait for its bundle to fill.
BUNDLE_SHARE = 4


def apply_latency_budget(t_env: StreamTableEnvironment, max_latency_ms: float,
                         model_batch_rows: int) -> dict[str, str]:
    """Set the job's buffer timeout, bundle size and time, and Arrow batch size for
    ``max_latency_ms`` (see the module docstring); returns the settings made. They apply
    to the whole job (every Python UDF of it)."""
    buffer_ms = max(1, int(max_latency_ms // BUFFER_SHARE))
    bundle_ms = max(1, int(max_latency_ms // BUNDLE_SHARE))
    settings = {
        "execution.buffer-timeout.enabled": "true",
        "execution.buffer-timeout.interval": f"{buffer_ms} ms",
        "python.fn-execution.bundle.time": str(bundle_ms),
        "python.fn-execution.bundle.size": str(model_batch_rows),
        "python.fn-execution.arrow.batch.size": str(model_batch_rows),
    }
    config = t_env.get_config()
    for key, value in settings.items():
        config.set(key, value)
    try:  # the environment's own value, read when the job graph is built
        j_exec_env_of_table_env(t_env).setBufferTimeout(buffer_ms)
    except Exception:  # a table environment without a stream environment
        log.debug("no stream execution environment to set the buffer timeout on")
    log.info("latency budget %g ms: buffer timeout %d ms, bundles of up to %d rows or %d ms",
             max_latency_ms, buffer_ms, model_batch_rows, bundle_ms)
    return settings
