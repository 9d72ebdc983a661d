"""Streaming inference latency (issue 16): from a row's arrival to its prediction.

A rate-limited datagen source (16 FLOAT features) at 1k, 10k and 100k rows/s for a few
seconds each, parallelism 1, the W3 MLP (16-256-256-1, batches of 4096, 1 torch thread):

* ``predict``: source -> ``flink_dl.pytorch.predict`` -> sink;
* ``pipeline + predict``: source -> ``flink_dl.pipeline.predict`` (a fitted
  ``StandardScaler`` served with hot swap) -> ``flink_dl.pytorch.predict`` -> sink.

Each row is stamped with ``CURRENT_TIMESTAMP`` as it leaves the source (materialised
through a DataStream round trip, so the planner cannot evaluate it later) and again at the
sink; the latency is the difference (millisecond clock). Each configuration runs with
Flink's and flink-dl's default settings (the baseline, same run) and with
``max_latency_ms`` set. Rows/s is rows over first arrival -> last prediction.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.workloads.data import FEATURES, INFER_BATCH, w3_model

RATES = (1_000, 10_000, 100_000)
#: Seconds of stream per run (more rows at low rates: percentiles need a few thousand).
SECONDS = {1_000: 6, 10_000: 5, 100_000: 5}
BUDGET_MS = 50.0


def _source(t_env, rate: int, rows: int):
    columns = ", ".join(f"{f} FLOAT" for f in FEATURES)
    bounds = ", ".join(f"'fields.{f}.min' = '-1', 'fields.{f}.max' = '1'" for f in FEATURES)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE lat_src ({columns}) WITH ('connector' = "
                      f"'datagen', 'rows-per-second' = '{rate}', 'number-of-rows' = '{rows}', "
                      f"{bounds})")
    stamped = t_env.sql_query("SELECT *, CURRENT_TIMESTAMP AS t_in FROM lat_src")
    return t_env.from_data_stream(t_env.to_data_stream(stamped))


def run(rate: int, budget_ms: float | None, model_path: Path, pipeline_dir: Path | None,
        out_dir: Path) -> dict[str, float]:
    """One streaming job; latency percentiles (ms) and rows/s."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_dl.pipeline import predict as pipeline_predict
    from flink_dl.pytorch import TorchModelHandler, predict

    rows = rate * SECONDS[rate]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    table = _source(t_env, rate, rows)
    if pipeline_dir is not None:
        table = pipeline_predict(table, pipeline_dir, max_latency_ms=budget_ms)
    handler = TorchModelHandler(model_path, FEATURES, factory=w3_model,
                                batch_size=INFER_BATCH, num_threads=1)
    scored = predict(table, handler, max_latency_ms=budget_ms)
    t_env.create_temporary_view("scored", scored)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE lat_sink (t_in STRING, t_out STRING, "
                      f"prediction FLOAT) WITH ('connector' = 'filesystem', 'path' = "
                      f"'{out_dir}', 'format' = 'csv')")
    # The prediction goes to the sink too: a column nobody reads is pruned with its UDF.
    t_env.execute_sql("INSERT INTO lat_sink SELECT CAST(CAST(t_in AS TIMESTAMP_LTZ(3)) AS "
                      "STRING), CAST(CURRENT_TIMESTAMP AS STRING), prediction FROM "
                      "scored").wait()
    frames = [pd.read_csv(p, header=None, names=["t_in", "t_out", "prediction"])
              for p in out_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    frame = pd.concat(frames)
    assert len(frame) == rows, f"{len(frame)} rows at the sink, expected {rows}"
    assert frame["prediction"].notna().all()
    t_in = pd.to_datetime(frame["t_in"], format="mixed")
    t_out = pd.to_datetime(frame["t_out"], format="mixed")
    latency = (t_out - t_in).dt.total_seconds().to_numpy() * 1000.0
    span = (t_out.max() - t_in.min()).total_seconds()
    return {"p50_ms": float(np.percentile(latency, 50)),
            "p99_ms": float(np.percentile(latency, 99)),
            "max_ms": float(latency.max()), "rows_per_s": rows / span}


def _pipeline(directory: Path) -> Path:
    """A fitted StandardScaler over the features, saved as a pipeline directory."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_dl.pipeline import Pipeline, StandardScaler

    rng = np.random.default_rng(0)
    history = pd.DataFrame(rng.uniform(-1, 1, size=(2000, len(FEATURES))).astype(np.float32),
                           columns=FEATURES)
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    Pipeline([StandardScaler(FEATURES)]).fit(t_env.from_pandas(history)).save(directory)
    return directory


def measure(rates: tuple[int, ...] = RATES) -> tuple[list[dict[str, object]], list[dict]]:
    rows: list[dict[str, object]] = []
    points: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "w3.pt"
        torch.manual_seed(0)
        torch.save(w3_model().state_dict(), model_path)
        pipeline_dir = _pipeline(Path(tmp) / "pipes")
        runs = 0
        for job, pipes in (("predict", None), ("pipeline + predict", pipeline_dir)):
            for rate in rates:
                for budget in (None, BUDGET_MS):
                    runs += 1
                    result = run(rate, budget, model_path, pipes, Path(tmp) / f"out-{runs}")
                    setting = "defaults" if budget is None else f"max_latency_ms={budget:g}"
                    rows.append({"job": job, "rate rows/s": rate, "settings": setting,
                                 "p50 ms": result["p50_ms"], "p99 ms": result["p99_ms"],
                                 "max ms": result["max_ms"],
                                 "sustained rows/s": result["rows_per_s"]})
                    points.append({"job": job, "rate": rate, "setting": setting, **result})
    return rows, points

