"""``OnlineStandardScaler``: running statistics from a stream, published as pipelines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flink_dl.online.scaler import RunningMoments


def test_running_moments_merge_windows_exactly_as_numpy() -> None:
    """Chan's parallel update over uneven windows, with a prior, equals numpy on the
    concatenation (population statistics)."""
    rng = np.random.default_rng(4)
    prior = rng.normal(3.0, 2.0, 400)
    windows = [rng.normal(10.0 * i, 1.0 + i, size) for i, size in enumerate([1, 7, 250, 3])]
    running = RunningMoments()
    running.merge(len(prior), float(prior.mean()), float(prior.var()))
    running.merge(0, 0.0, 0.0)  # an empty window changes nothing
    for window in windows:
        running.merge(len(window), float(window.mean()), float(window.var()))
    everything = np.concatenate([prior, *windows])
    assert running.count == len(everything)
    assert running.mean == pytest.approx(everything.mean(), rel=1e-12)
    assert running.std == pytest.approx(everything.std(), rel=1e-12)
    assert RunningMoments().std == 0.0


def _stream(t_env, directory: Path, frame: pd.DataFrame):
    directory.mkdir()
    frame.to_csv(directory / "part-0.csv", header=False, index=False)
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE clicks (ts TIMESTAMP(3), x DOUBLE, z INT, "
        "WATERMARK FOR ts AS ts) WITH ('connector' = 'filesystem', "
        f"'path' = '{directory}', 'format' = 'csv', 'csv.null-literal' = '')")
    return t_env.from_path("clicks")


def test_stream_statistics_are_published_as_pipeline_versions(tmp_path: Path) -> None:
    """A pipeline fitted on history, then 3 event-time windows of a drifted stream: one new
    pipeline version per window, the newest serving the stream's mean/std (numpy, 1e-9; a
    NULL is not counted) with the same structure, so ``predict`` swaps it in."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    import flink_dl
    from flink_dl.models import ModelStore
    from flink_dl.online import OnlineStandardScaler
    from flink_dl.pipeline import Pipeline, PipelineModel
    from flink_dl.pipeline.serving import _split, structure
    from flink_dl.pipeline.sql import columns_of

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    rng = np.random.default_rng(8)
    history = pd.DataFrame({"x": rng.normal(0.0, 1.0, 300),
                            "z": rng.integers(0, 5, 300).astype("int32")})
    pipes = tmp_path / "pipes"
    history_table = t_env.from_pandas(history)
    fitted = Pipeline([OnlineStandardScaler(["x", "z"])]).fit(history_table)
    fitted.save(pipes)
    n = 90
    stream = pd.DataFrame({
        "ts": pd.date_range("2026-01-01", periods=n, freq="333ms").strftime(
            "%Y-%m-%d %H:%M:%S.%f").str[:-3],
        "x": rng.normal(5.0, 3.0, n), "z": rng.integers(10, 20, n)})
    stream.loc[4, "x"] = np.nan  # NULL in the CSV: not counted
    published = OnlineStandardScaler(["x", "z"]).fit_stream(
        _stream(t_env, tmp_path / "stream", stream), pipes, window=10, time="ts")
    assert published.get_type().get_field_names() == ["version", "rows", "window_end"]
    flink_dl.execute(env, "online-scaler", timeout_s=180)

    assert ModelStore(pipes).latest_number() == 1 + 3  # windows [0,10) [10,20) [20,30)
    newest = PipelineModel.load(pipes)
    stage = newest.stages[0]
    x = stream["x"].dropna().to_numpy()
    assert stage.mean == pytest.approx([x.mean(), stream["z"].mean()], rel=1e-9)
    assert stage.std == pytest.approx([x.std(), stream["z"].std(ddof=0)], rel=1e-9)
    first = PipelineModel.load(pipes, version=1)
    plan = [columns_of(history_table)]
    assert first.stages[0].mean != stage.mean
    assert structure(*_split(first.stages), plan)[0] == structure(*_split(newest.stages), plan)[0]
