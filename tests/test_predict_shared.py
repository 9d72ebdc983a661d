"""One ``predict`` operator per ``predict`` call, whatever the number of queries of its
result (issue 27, point 4): Flink plans every consumer of a Table on its own, so three
consumers of ``scored`` used to run three copies of the source, the parameter UDF and the
model, each polling for versions on its own. And a version published while rows flow is
served within one poll interval plus one bundle, to every consumer alike."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import torch
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from pyflink.table.expressions import call_sql, col

import flink_dl
from flink_dl.files import count_rows, read_files, write_files
from flink_dl.online import join_labels
from flink_dl.pipeline import PipelineModel, StandardScalerModel, TorchModel
from flink_dl.pipeline import predict as serve
from flink_dl.pytorch import predict

X = ["x1", "x2"]
POLL_S = 0.5
BUNDLE_S = 1.0  # Flink's python.fn-execution.bundle.time, which predict keeps in streaming


def save_version(root: Path, bias: float) -> None:
    """A pipeline version: a scaler, then a TorchScript linear model whose bias is
    ``bias`` (so a row's logit tells which version's model made it)."""
    linear = torch.nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(bias)
    model_dir = root / f"model-{bias:g}"
    model_dir.mkdir(parents=True)
    torch.jit.script(linear).save(str(model_dir / "model.ts"))
    PipelineModel([StandardScalerModel(X, [0.0, 0.0], [1.0, 1.0]),
                   TorchModel(model_dir / "model.ts", X, {"logit": "float32"})]
                  ).save(root / "pipes")


def requests(t_env: StreamTableEnvironment, rows_per_s: int) -> None:
    """Ids 0, 1, ... at ``rows_per_s`` (a sequence keeps its range in memory: 200,000 ids,
    100 s at 2,000 rows/s)."""
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE requests (id BIGINT, x1 DOUBLE, x2 DOUBLE, "
        "ts AS CAST(CURRENT_TIMESTAMP AS TIMESTAMP(3)), "
        "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'datagen', "
        f"'rows-per-second' = '{rows_per_s}', 'fields.id.kind' = 'sequence', "
        "'fields.id.start' = '0', 'fields.id.end' = '200000', "
        "'fields.x1.min' = '-1', 'fields.x1.max' = '1', "
        "'fields.x2.min' = '-1', 'fields.x2.max' = '1')")


def requests_and_labels(tmp_path: Path) -> tuple[StreamExecutionEnvironment,
                                                   StreamTableEnvironment]:
    """A saved pipeline version and an environment with ``requests`` and ``labels``."""
    save_version(tmp_path, 0.0)
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    requests(t_env, 10)
    t_env.execute_sql("CREATE TEMPORARY TABLE labels (id BIGINT, y INT, ts TIMESTAMP(3), "
                      "WATERMARK FOR ts AS ts) WITH ('connector' = 'datagen')")
    return env, t_env


def python_operators(env: StreamExecutionEnvironment) -> int:
    plan = json.loads(env.get_execution_plan())
    return sum(1 for node in plan["nodes"] if node["type"].startswith("PythonCalc"))


def test_one_predict_operator_whatever_the_number_of_consumers(tmp_path: Path) -> None:
    env, t_env = requests_and_labels(tmp_path)
    scored = serve(t_env.from_path("requests"), tmp_path / "pipes")
    assert "*ROWTIME*" in str(scored.get_schema())               # event time survives
    samples = join_labels(scored, t_env.from_path("labels"), key="id", within=5)
    t_env.to_data_stream(samples).print()
    t_env.to_data_stream(scored.select(col("id"), col("logit"))).print()
    t_env.to_data_stream(scored.where(col("logit") > 0)).print()
    # the parameter UDF and the model: one each, not one per consumer (6 before)
    assert python_operators(env) == 2

    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    requests(t_env, 10)
    scored = predict(t_env.from_path("requests"), str(tmp_path / "model-0" / "model.ts"),
                     features=X)
    for _ in range(3):
        t_env.to_data_stream(scored).print()
    assert python_operators(env) == 1                             # 3 before


def test_a_published_version_is_served_within_a_poll_and_a_bundle(tmp_path: Path) -> None:
    save_version(tmp_path, 1.0)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.local-time-zone", "UTC")        # NOW() as epoch below
    requests(t_env, 2000)
    scored = serve(t_env.from_path("requests"), tmp_path / "pipes", poll_interval_s=POLL_S)
    served = scored.select(col("id"), col("logit"), col("pipeline_version"),
                           call_sql("CAST(NOW() AS TIMESTAMP(3))").alias("served"))
    outputs = [write_files(served, tmp_path / f"consumer-{i}") for i in range(3)]
    published: dict[int, float] = {}
    stop = threading.Event()

    def publish() -> None:  # versions 2..7, one every 2 s, while rows flow
        for version in range(2, 8):
            if stop.wait(2.0):
                return
            save_version(tmp_path, float(version))
            published[version] = time.time()

    client = env.execute_async("versions while rows flow")
    try:
        deadline = time.monotonic() + 180
        while count_rows(outputs[0]) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)                                       # rows flow
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        publisher.join(timeout=60)
        time.sleep(POLL_S + BUNDLE_S + 3)                         # the last one served
    finally:
        stop.set()
        client.cancel()
        flink_dl.cleanup(env)
    assert sorted(published) == list(range(2, 8))
    frames = [read_files(out) for out in outputs]
    bound = POLL_S + BUNDLE_S + 1.5                               # + slack on a busy box
    for frame in frames:
        assert (frame["logit"] == frame["pipeline_version"]).all()   # that version's model
        served_s = frame["served"].astype("int64") / 1e9
        lags = {v: float(served_s[frame["pipeline_version"] >= v].min() - at)
                for v, at in published.items()}
        print("publish -> first served (s):", {v: round(lag, 2) for v, lag in lags.items()})
        assert max(lags.values()) <= bound, lags
    # every consumer saw each row with the same version (one operator served them all)
    common = frames[0].merge(frames[1], on="id").merge(frames[2], on="id")
    assert len(common) > 10_000
    assert (common["pipeline_version_x"] == common["pipeline_version_y"]).all()
    assert (common["pipeline_version_x"] == common["pipeline_version"]).all()
    assert pd.Series(frames[0]["id"]).is_unique


def test_predict_and_monitor_leave_nothing_for_the_next_job(tmp_path: Path) -> None:
    """Flink adds a Table's conversion to a DataStream to the environment at once: a shared
    result that only Table jobs read would run again, with no sink, in the environment's
    next ``execute``. Building ``predict`` and ``monitor`` adds no transformation to it."""
    from pyflink.util.java_utils import get_field_value

    from flink_dl.online import monitor

    env, t_env = requests_and_labels(tmp_path)
    listed = get_field_value(env._j_stream_execution_environment, "transformations")
    scored = serve(t_env.from_path("requests"), tmp_path / "pipes")
    plain = predict(t_env.from_path("requests"), str(tmp_path / "model-0" / "model.ts"),
                    features=X)
    samples = join_labels(scored, t_env.from_path("labels"), key="id", within=5)
    monitor(samples.add_columns(call_sql("1.0E0 / (1.0E0 + EXP(-logit))").alias("p")),
            label="y", score="p", window=5, metrics=False)
    assert listed.size() == 0
    # what reads them still reaches them: the model and its source in the reader's job
    t_env.to_data_stream(plain).print()
    assert listed.size() > 0 and python_operators(env) == 1
