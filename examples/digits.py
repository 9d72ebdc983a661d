"""Train a digits classifier with 2 PyTorch workers inside Flink, then predict with it.

Data: scikit-learn's bundled 8x8 digits (1,797 images, no download), 80 % train / 20 %
held out. Training runs as a Flink job on the embedded mini-cluster: the training table is
split across the ranks as Arrow batches through shared memory, each rank trains a DDP
replica, rank 0 publishes the model into a versioned model directory. A second Flink job
then runs batch inference on the held-out table with the saved model and prints accuracy.

    python examples/digits.py [--workers 2] [--epochs 15] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

PIXELS = [f"p{i}" for i in range(64)]
log = logging.getLogger("digits")


def load_split(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The digits as two DataFrames (id, p0..p63 scaled to [0, 1], label): train, held out."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame((digits.data / 16.0).astype(np.float32), columns=PIXELS)
    frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
    frame["label"] = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(len(frame) * 0.8)
    return frame.iloc[order[:cut]].reset_index(drop=True), \
        frame.iloc[order[cut:]].reset_index(drop=True)


def make_model():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 10))


def train_entry(ctx) -> dict:
    """Runs in every rank's process once the process group is up."""
    import torch

    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts them)
    model = ctx.prepare_model(make_model())
    optimizer = torch.optim.Adam(model.parameters(), lr=float(ctx.properties.get("lr", "0.003")))
    loader = ctx.dataloader(int(ctx.properties.get("batch_size", "32")), features=PIXELS,
                            label="label", columns=["id"])
    audit = ctx.properties.get("audit_dir")
    step = 0
    for epoch in range(ctx.epochs):
        started, seen, total_loss, ids = time.perf_counter(), 0, 0.0, []
        for batch in loader:
            loss = torch.nn.functional.cross_entropy(model(batch["features"]), batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(batch["label"])
            total_loss += loss.item() * len(batch["label"])
            if audit:
                ids.append(batch["id"].numpy().copy())
        elapsed = time.perf_counter() - started
        ctx.report(step=step, epoch=epoch, loss=total_loss / max(seen, 1), samples=seen,
                   samples_per_s=seen / elapsed if elapsed else 0.0)
        if audit:
            np.save(Path(audit) / f"ids-rank{ctx.rank}-epoch{epoch}.npy",
                    np.concatenate(ids) if ids else np.empty(0, np.int64))
    module = model.module if hasattr(model, "module") else model
    if audit:
        torch.save(module.state_dict(), Path(audit) / f"weights-rank{ctx.rank}.pt")
        Path(audit, f"host-rank{ctx.rank}.json").write_text(json.dumps(
            {"hostname": socket.gethostname(), "address": ctx.node.address}))
    ctx.save_model(model, step=step, torchscript=True)
    return {"rank": ctx.rank, "steps": step}


def train(model_dir: str, workers: int = 2, epochs: int = 15,
          properties: dict[str, str] | None = None, env=None) -> list[dict]:
    """Run the training job; returns its events (metrics and model versions)."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    from flink_dl.pytorch import TorchConfig
    from flink_dl.pytorch import train as torch_train

    train_frame, _ = load_split()
    env = env or StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    table = t_env.from_pandas(train_frame)
    config = TorchConfig(world_size=workers, entry=train_entry, epochs=epochs,
                         model_dir=model_dir, properties=properties or {}, name="digits")
    events = torch_train(env, table, config)
    with events.execute_and_collect("digits-train") as results:
        return [row.as_dict() for row in results]


def held_out_accuracy(predict_fn, env=None) -> tuple[float, int]:
    """Accuracy of ``predict_fn(table)`` (a Table with a ``predicted`` column) on the
    held-out images, and the number of rows scored."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    _, held_out = load_split()
    env = env or StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    predicted = predict_fn(t_env.from_pandas(held_out[["id", *PIXELS, "label"]]))
    rows = predicted.select(predicted.id, predicted.label, predicted.predicted)
    with rows.execute().collect() as results:
        pairs = [(r[1], r[2]) for r in results]
    correct = sum(int(label == guess) for label, guess in pairs)
    return correct / len(pairs), len(pairs)


def evaluate(model_dir: str, env=None) -> tuple[float, int]:
    """Batch inference on the held-out images with the newest saved model: accuracy, rows."""
    from flink_dl.pytorch import predict

    return held_out_accuracy(
        lambda table: predict(table, model_dir, features=PIXELS,
                              outputs={"predicted": pa.int64()},
                              postprocess=lambda logits: logits.argmax(dim=1),
                              batch_size=512), env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--audit-dir", default=None,
                        help="each rank saves its final weights, the ids it read and its "
                             "host here (for checks across ranks)")
    args = parser.parse_args(argv)
    from flink_dl.log import configure_logging

    configure_logging()
    model_dir = args.model_dir or tempfile.mkdtemp(prefix="flink-dl-digits-")
    started = time.monotonic()
    log.info("training on %d workers for %d epochs (embedded Flink); models -> %s",
             args.workers, args.epochs, model_dir)
    events = train(model_dir, args.workers, args.epochs,
                   properties={"audit_dir": args.audit_dir} if args.audit_dir else None)
    train_s = time.monotonic() - started
    by_epoch: dict[int, list[dict]] = {}
    for event in (e for e in events if e["kind"] == "metrics"):
        by_epoch.setdefault(event["epoch"], []).append(json.loads(event["metrics"]))
    print("epoch  mean loss  samples (all ranks)  samples/s (all ranks)")
    for epoch, ranks in sorted(by_epoch.items()):
        print(f"{epoch:5d}  {np.mean([m['loss'] for m in ranks]):9.4f}  "
              f"{sum(m['samples'] for m in ranks):19d}  "
              f"{sum(m['samples_per_s'] for m in ranks):21.0f}")
    versions = [e for e in events if e["kind"] == "model"]
    print(f"training job: {train_s:.1f}s; model version {versions[-1]['version']} at "
          f"{versions[-1]['path']}")
    started = time.monotonic()
    accuracy, rows = evaluate(model_dir)
    print(f"batch inference on {rows} held-out images: accuracy {accuracy:.4f} "
          f"({time.monotonic() - started:.1f}s)")
    return 0 if accuracy >= 0.95 else 1


if __name__ == "__main__":
    import flink_dl

    flink_dl.use_jvm_archive()  # before the first gateway JVM: faster start-up
    raise SystemExit(main())
