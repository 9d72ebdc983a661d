"""Beam's state sampler without its thread (``flink_dl.startup.worker_tuning``): bundle ends
no longer wait for the sampling thread to wake, and scoped states, the current tracker and
user metrics work as before; a flink-dl operator applies it in a process-mode worker."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from apache_beam.metrics.execution import MetricsContainer, MetricsEnvironment
from apache_beam.metrics.metric import Metrics
from apache_beam.runners.worker import statesampler
from apache_beam.utils.counters import CounterFactory
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from flink_dl.pytorch import TorchModelHandler, predict
from flink_dl.startup import worker_tuning
from tests.test_pytorch_jobs import _factory, _save_model


def test_the_sampler_runs_bundles_without_a_thread_and_keeps_user_metrics() -> None:
    assert worker_tuning.apply()
    assert worker_tuning.apply()  # idempotent
    sampler = statesampler.StateSampler("stage", CounterFactory())
    step_metrics = MetricsContainer("step")
    state = sampler.scoped_state("step", "process", metrics_container=step_metrics)
    for bundle in range(3):  # a bundle processor reuses its sampler: reset, start, stop
        sampler.reset()
        threads = threading.active_count()
        sampler.start()
        assert threading.active_count() == threads, "the sampler started a thread"
        assert statesampler.get_current_tracker() is sampler
        with state:
            Metrics.counter("test", "rows").inc(10)
            assert MetricsEnvironment.current_container() is step_metrics
        sampler.stop_if_still_running()
        assert statesampler.get_current_tracker() is None
        assert sampler.finished
        counters = {key.metric.name: value for key, value in
                    step_metrics.get_cumulative().counters.items()}
        assert counters["rows"] == 10 * (bundle + 1)
    sampler.stop_if_still_running()  # a second stop is a no-op, as in Beam


def test_the_thread_is_kept_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(worker_tuning.KEEP_THREAD_ENV, "1")
    assert not worker_tuning.apply()


class _ReportingHandler(TorchModelHandler):
    """Writes, from the worker that runs it, whether its sampler is threadless."""

    def __init__(self, *args: Any, report: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.report = report

    def run(self, model: Any, columns: Any) -> Any:
        tracker = statesampler.get_current_tracker()
        Path(self.report).write_text(json.dumps({
            "pid": os.getpid(), "tracker": tracker is not None,
            "threadless": getattr(type(tracker), "_flink_dl_threadless", False)}))
        return super().run(model, columns)


def test_a_process_mode_predict_worker_runs_the_threadless_sampler(
        process_env: StreamExecutionEnvironment, tmp_path: Path) -> None:
    _, path = _save_model(tmp_path)
    report = tmp_path / "report.json"
    handler = _ReportingHandler(path, list("abcd"), factory=_factory, batch_size=64,
                                report=str(report))
    t_env = StreamTableEnvironment.create(process_env)
    frame = pd.DataFrame(np.random.default_rng(5).normal(size=(300, 4)).astype(np.float32),
                         columns=list("abcd"))
    scored = predict(t_env.from_pandas(frame), handler).to_pandas()
    assert len(scored) == len(frame)
    seen = json.loads(report.read_text())
    assert seen["pid"] != os.getpid(), "the UDF ran in this process, not a Python worker"
    assert seen == {"pid": seen["pid"], "tracker": True, "threadless": True}
