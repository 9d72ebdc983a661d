"""One pipeline, fitted on a bounded CSV table, saved, then scoring a stream of new files.

The feature logic is written once: impute the skewed ``income`` (median) and the
``region`` (most frequent), take ``LN(1 + income)`` in SQL, standardise, one-hot encode the
region, and train a small PyTorch model with 2 ranks on the result. ``fit`` computes every
statistic with Flink (two jobs for the feature stages, one training job), ``save`` writes the
stages' JSON and the TorchScript model as one checksummed version. A **separate** streaming
job then loads the version and scores CSV files as they land in a monitored directory: the
same SQL expressions, with the same fitted constants, compiled into the JVM, so the stream's
features are the batch's features, bit for bit.

Run: ``python examples/pipeline.py [work_dir]`` (embedded Flink, about two minutes).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment, Table

from flink_dl.pipeline import (
    Imputer,
    OneHotEncoder,
    Pipeline,
    PipelineModel,
    SQLTransform,
    StandardScaler,
    TorchEstimator,
)
from flink_dl.pytorch import TorchConfig

log = logging.getLogger("pipeline-example")

REGIONS = ["north", "south", "east", "west"]
REGION_EFFECT = {"north": 0.8, "south": -0.5, "east": 0.2, "west": -1.0}
COLUMNS = "id BIGINT, region STRING, income DOUBLE, age INT, visits INT, clicked INT"
FEATURES = ["log_income", "age", "visits", "region_*"]  # region_* = the one-hot columns


def make_rows(count: int, seed: int, first_id: int = 0) -> pd.DataFrame:
    """Synthetic visitors: a categorical region, a skewed income with a few gaps, and a
    click label that depends on all of them."""
    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, size=count, p=[0.4, 0.3, 0.2, 0.1])
    income = rng.lognormal(mean=3.0, sigma=0.8, size=count)
    age = rng.integers(18, 80, size=count)
    visits = rng.poisson(3.0, size=count)
    logit = (1.5 * (np.log1p(income) - 3.0) - 0.05 * (age - 45) + 0.4 * (visits - 3)
             + np.array([REGION_EFFECT[r] for r in region]))
    clicked = (rng.random(count) < 1 / (1 + np.exp(-logit))).astype("int32")
    frame = pd.DataFrame({"id": np.arange(first_id, first_id + count), "region": region,
                          "income": income, "age": age.astype("int32"),
                          "visits": visits.astype("int32"), "clicked": clicked})
    frame.loc[rng.random(count) < 0.03, "income"] = np.nan   # gaps: empty CSV fields
    frame.loc[rng.random(count) < 0.02, "region"] = None
    return frame


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically: a hidden file (the Flink source skips names starting with '.')
    renamed into place."""
    hidden = path.with_name("." + path.name)
    frame.to_csv(hidden, header=False, index=False, na_rep="")
    hidden.rename(path)


def csv_table(t_env: StreamTableEnvironment, name: str, directory: Path,
              monitor: bool = False) -> Table:
    """A filesystem CSV table over ``directory``; ``monitor``: unbounded, new files read
    as they land."""
    options = {"connector": "filesystem", "path": str(directory), "format": "csv",
               "csv.null-literal": ""}
    if monitor:
        options["source.monitor-interval"] = "1 s"
    with_clause = ", ".join(f"'{k}' = '{v}'" for k, v in options.items())
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name} ({COLUMNS}) WITH ({with_clause})")
    return t_env.from_path(name)


def train_clicks(ctx: Any) -> None:
    """Every rank: a small MLP on its share of the pipeline's features (DDP)."""
    import torch

    torch.manual_seed(0)
    width = len(ctx.features)                      # the columns the estimator chose
    model = ctx.prepare_model(torch.nn.Sequential(
        torch.nn.Linear(width, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    step, loss = 0, torch.tensor(0.0)
    for epoch in range(ctx.epochs):
        for batch in ctx.dataloader(256):
            logits = model(batch["features"]).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, batch["label"].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        ctx.report(epoch=epoch, step=step, loss=round(loss.item(), 4))
    ctx.save_model(model, step=step, torchscript=True)


def sigmoid(logits: Any) -> Any:
    import torch

    return torch.sigmoid(logits)


def build_pipeline(model_dir: str, epochs: int = 8, world_size: int = 2) -> Pipeline:
    return Pipeline([
        Imputer(["income"], strategy="median"),
        Imputer(["region"], strategy="most_frequent"),
        SQLTransform("SELECT *, LN(1 + income) AS log_income FROM __THIS__"),
        StandardScaler(["log_income", "age", "visits"]),
        OneHotEncoder(["region"]),
        TorchEstimator(TorchConfig(world_size=world_size, entry=train_clicks, epochs=epochs,
                                   model_dir=model_dir, env={"OMP_NUM_THREADS": "1"}),
                       features=FEATURES, label="clicked", outputs={"p_click": pa.float32()},
                       postprocess=sigmoid),
    ])


def fit_and_save(work: Path, rows: int = 6000, epochs: int = 8) -> PipelineModel:
    """The batch job: fit the pipeline on the history and save it."""
    (work / "history").mkdir(parents=True, exist_ok=True)
    write_csv(make_rows(rows, seed=0), work / "history" / "part-0.csv")
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    history = csv_table(t_env, "history", work / "history")
    model = build_pipeline(str(work / "torch-models"), epochs).fit(history)
    version = model.save(work / "pipelines")
    log.info("saved pipeline version %d (%d Flink jobs to fit) at %s", version.version,
             model.fit_jobs, version.path)
    return model


def score_stream(pipeline_dir: Path, incoming: Path, batches: list[pd.DataFrame],
                 timeout_s: float = 300.0) -> pd.DataFrame:
    """The streaming job: load the saved pipeline, score each file as it lands in
    ``incoming``, stop once every row is scored (or cancel after ``timeout_s``)."""
    incoming.mkdir(parents=True, exist_ok=True)
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    model = PipelineModel.load(pipeline_dir)
    scored = model.transform(csv_table(t_env, "incoming", incoming, monitor=True))
    result = scored.execute()
    client = result.get_job_client()
    expected = sum(len(b) for b in batches)
    done = threading.Event()

    def feed() -> None:
        for index, batch in enumerate(batches):
            time.sleep(1.0)
            write_csv(batch, incoming / f"part-{index}.csv")
        if not done.wait(timeout_s):
            log.error("the streaming job scored too few rows in %.0f s; cancelling", timeout_s)
            client.cancel()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    rows = []
    names = scored.get_schema().get_field_names()
    try:
        with result.collect() as results:
            for row in results:
                rows.append(list(row))
                if len(rows) == expected:
                    break
    finally:
        done.set()
    return pd.DataFrame(rows, columns=names)


def main(work_dir: str | None = None) -> dict[str, Any]:
    work = Path(work_dir or tempfile.mkdtemp(prefix="pipeline-"))
    model = fit_and_save(work)
    new_files = [make_rows(300, seed=10 + i, first_id=100_000 + 1000 * i) for i in range(3)]
    scored = score_stream(work / "pipelines", work / "incoming", new_files)
    truth = pd.concat(new_files).set_index("id")["clicked"]
    accuracy = float(((scored["p_click"] > 0.5).astype(int).to_numpy()
                      == truth.loc[scored["id"]].to_numpy()).mean())
    return {"work_dir": str(work), "fit_jobs": model.fit_jobs, "scored": scored,
            "accuracy": accuracy, "stages": [s.to_json() for s in model.stages[:-1]]}


if __name__ == "__main__":
    import flink_dl

    flink_dl.use_jvm_archive()  # before the first gateway JVM: faster start-up
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    outcome = main(sys.argv[1] if len(sys.argv) > 1 else None)
    for stage in outcome["stages"]:
        print(f"{stage['kind']:>20}: {stage['data']}")
    print(f"fitted in {outcome['fit_jobs']} Flink jobs; saved under {outcome['work_dir']}")
    print(f"streamed {len(outcome['scored'])} new rows through the saved pipeline: "
          f"accuracy {outcome['accuracy']:.3f}")
    print(outcome["scored"].head(8).to_string(index=False))
