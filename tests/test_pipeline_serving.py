"""``flink_dl.pipeline.predict``: a running stream job follows new pipeline versions,
swapping features and model together per row, and refuses a version that changes the
pipeline's structure."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from examples import pipeline as example
from flink_dl.pipeline import PipelineModel, predict

FEATURES = ["log_income", "age", "visits", "region_east", "region_north", "region_south",
            "region_west", "income"]


def fit(tmp_path: Path, name: str, seed: int) -> PipelineModel:
    """The example's pipeline fitted on other rows: other statistics, other weights."""
    history = tmp_path / f"history-{name}"
    history.mkdir()
    example.write_csv(example.make_rows(2000, seed=seed), history / "part-0.csv")
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    pipeline = example.build_pipeline(str(tmp_path / f"models-{name}"), epochs=2)
    return pipeline.fit(example.csv_table(t_env, f"history_{name}", history))


def test_stream_follows_versions_and_refuses_a_new_structure(tmp_path) -> None:
    pipes = tmp_path / "pipelines"
    first, second = fit(tmp_path, "a", seed=1), fit(tmp_path, "b", seed=2)
    assert first.stages[3].mean != second.stages[3].mean        # the swap is visible
    first.save(pipes)
    files = [example.make_rows(150, seed=30 + i, first_id=70_000 + 1000 * i) for i in range(3)]

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    scored = predict(example.csv_table(t_env, "incoming", incoming, monitor=True), pipes,
                     poll_interval_s=0.2)
    names = scored.get_schema().get_field_names()
    assert names[-2:] == ["p_click", "pipeline_version"]
    result = scored.execute()
    finished = threading.Event()

    def watchdog() -> None:
        if not finished.wait(240):
            result.get_job_client().cancel()

    threading.Thread(target=watchdog, daemon=True).start()
    got: list[pd.DataFrame] = []
    try:
        with result.collect() as rows:
            for index, frame in enumerate(files):
                if index == 1:
                    second.save(pipes)                               # version 2: swaps in
                elif index == 2:
                    PipelineModel(second.stages[:-1], second.input_schema).save(pipes)
                time.sleep(1.0)                                      # > poll_interval_s
                example.write_csv(frame, incoming / f"part-{index}.csv")
                batch = [list(next(rows)) for _ in range(len(frame))]
                got.append(pd.DataFrame(batch, columns=names))
    finally:
        finished.set()

    # version 3 dropped the model stage: refused, the job stays on version 2
    assert [sorted(set(g["pipeline_version"])) for g in got] == [[1], [2], [2]]
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    for index, (frame, served) in enumerate(zip(files, got, strict=True)):
        directory = tmp_path / f"bounded-{index}"
        directory.mkdir()
        example.write_csv(frame, directory / "part-0.csv")
        version = served["pipeline_version"].iloc[0]
        expected = PipelineModel.load(pipes, version=int(version)).transform(
            example.csv_table(t_env, f"bounded_{index}", directory)).to_pandas()
        expected = expected.sort_values("id").reset_index(drop=True)
        served = served.sort_values("id").reset_index(drop=True)
        for name in [*FEATURES, "p_click"]:
            want = expected[name].to_numpy()
            have = served[name].to_numpy().astype(want.dtype)
            assert want.tobytes() == have.tobytes(), f"file {index}: {name} differs"
    assert not np.array_equal(got[0]["log_income"].head(1), got[1]["log_income"].head(1))
