"""Streaming training and streaming prediction in one Flink job.

An unbounded datagen source feeds 2 PyTorch workers that keep learning a linear function;
rank 0 publishes a new model version every ``--export-every`` steps into a versioned model
directory, and the versions also leave the job as a stream. A second unbounded source is
scored by an in-operator predictor that follows the model directory: it swaps in each new
version without a restart and tags every prediction with the version that made it.

    python examples/streaming.py [--seconds 60] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

FEATURES = ["x0", "x1", "x2", "x3"]
WEIGHTS = [2.0, -1.0, 0.5, 0.25]
log = logging.getLogger("streaming")


def make_model():
    import torch

    return torch.nn.Linear(len(FEATURES), 1)


def stream_entry(ctx) -> None:
    """Train on the endless input; publish versions as ``TorchConfig`` asks."""
    import torch

    torch.manual_seed(0)
    model = ctx.prepare_model(make_model())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = ctx.dataloader(int(ctx.properties.get("batch_size", "64")), features=FEATURES,
                            label="y")
    for step, batch in enumerate(loader, start=1):
        loss = torch.nn.functional.mse_loss(model(batch["features"]).squeeze(1),
                                            batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ctx.maybe_save_model(model, step=step, metrics={"loss": loss.item()})


def source_table(t_env, name: str, rows_per_second: int):
    """An unbounded table of random features and the label ``y = x . WEIGHTS``."""
    fields = ", ".join(f"{f} FLOAT" for f in FEATURES)
    bounds = ", ".join(f"'fields.{f}.min'='-1', 'fields.{f}.max'='1'" for f in FEATURES)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name} ({fields}) WITH ('connector'='datagen', "
                      f"'rows-per-second'='{rows_per_second}', {bounds})")
    label = " + ".join(f"CAST({w} AS FLOAT) * {f}" for f, w in zip(FEATURES, WEIGHTS,
                                                                  strict=True))
    return t_env.sql_query(f"SELECT {', '.join(FEATURES)}, CAST({label} AS FLOAT) AS y "
                           f"FROM {name}")


def build(env, model_dir: str, export_every_steps: int = 200,
          train_rows_per_s: int = 5000, predict_rows_per_s: int = 20):
    """Add both pipelines to ``env``; returns (training events, predictions) streams."""
    from pyflink.table import StreamTableEnvironment

    from flink_dl.pytorch import TorchConfig, predict, train

    t_env = StreamTableEnvironment.create(env)
    events = train(env, source_table(t_env, "train_src", train_rows_per_s),
                   TorchConfig(world_size=2, entry=stream_entry, model_dir=model_dir,
                               export_every_steps=export_every_steps, name="stream-train"))
    scored = predict(source_table(t_env, "score_src", predict_rows_per_s), model_dir,
                     features=FEATURES, factory=make_model, poll_interval_s=0.5,
                     batch_size=64)
    return events, t_env.to_data_stream(scored)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args(argv)
    from flink_dl.log import configure_logging

    configure_logging()
    from pyflink.datastream import StreamExecutionEnvironment

    import flink_dl
    from flink_dl.models import ModelStore

    model_dir = args.model_dir or tempfile.mkdtemp(prefix="flink-dl-stream-")
    env = StreamExecutionEnvironment.get_execution_environment()
    events, scored = build(env, model_dir)
    events.print()  # model versions as they are published
    scored.print()  # x0..x3, y, prediction, model_version
    client = env.execute_async("flink-dl streaming example")
    log.info("running for %.0fs; model versions -> %s", args.seconds, model_dir)
    try:
        time.sleep(args.seconds)
    finally:
        client.cancel().result()
        flink_dl.cleanup(env)  # node processes, work dirs of the cancelled job
    store = ModelStore(model_dir)
    print(f"published {len(store.version_numbers())} model versions in {model_dir}")
    return 0


if __name__ == "__main__":
    import flink_dl

    flink_dl.use_jvm_archive()  # before the first gateway JVM: faster start-up
    raise SystemExit(main())
