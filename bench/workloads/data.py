"""The W1/W3 workloads of issue 4: data (8 CSV files, numpy seed 0) and models, shared by
flink-dl's runs and their baselines."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

FEATURES = [f"f{i}" for i in range(16)]
#: W1's ranks (PyTorch) and workers (TensorFlow, Ray).
WORKERS = 2
BATCH = 1024
INFER_BATCH = 4096
FILES = 8
CONVERT = pacsv.ConvertOptions(column_types={c: pa.float32() for c in [*FEATURES, "label"]})
log = logging.getLogger(__name__)


def csv_dir(rows: int) -> Path:
    """``rows`` x (16 float32 features + label) as 8 CSV files, made once per size."""
    directory = Path(tempfile.gettempdir()) / f"flink-dl-bench-w1-{rows}"
    done = directory / ".complete"
    if done.exists():
        return directory
    directory.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, len(FEATURES))).astype(np.float32)
    weights = rng.normal(size=len(FEATURES)).astype(np.float32)
    y = (x @ weights + 0.1 * rng.normal(size=rows)).astype(np.float32)
    for i, part in enumerate(np.array_split(np.arange(rows), FILES)):
        table = pa.table({**{f: x[part, j] for j, f in enumerate(FEATURES)},
                          "label": y[part]})
        pacsv.write_csv(table, directory / f"part-{i}.csv",
                        pacsv.WriteOptions(include_header=False))
    done.touch()
    log.info("wrote %d rows as %d CSV files in %s", rows, FILES, directory)
    return directory


def csv_files(rows: int) -> list[Path]:
    return sorted(csv_dir(rows).glob("part-*.csv"))


def read_part(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CSV file's features (rows, 16) and labels (rows,), read with pyarrow."""
    table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(
        column_names=[*FEATURES, "label"]), convert_options=CONVERT)
    x = np.stack([table.column(f).to_numpy() for f in FEATURES], axis=1)
    return x, table.column("label").to_numpy()


def read_all(rows: int) -> tuple[np.ndarray, np.ndarray]:
    tables = [pacsv.read_csv(p, read_options=pacsv.ReadOptions(
        column_names=[*FEATURES, "label"]), convert_options=CONVERT) for p in csv_files(rows)]
    table = pa.concat_tables(tables)
    x = np.stack([table.column(f).to_numpy() for f in FEATURES], axis=1).astype(np.float32)
    return x, table.column("label").to_numpy().astype(np.float32)


def w1_model():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                               torch.nn.ReLU(), torch.nn.Linear(64, 1))


def w3_model():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(16, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 1))


def train_steps(model: Any, optimizer: Any, batches: Iterable[tuple[Any, Any]]) -> int:
    """W1's training step (MSE, one optimizer step per batch) over ``(features, label)``
    tensor batches; returns the rows trained on."""
    import torch

    rows = 0
    for features, label in batches:
        loss = torch.nn.functional.mse_loss(model(features).squeeze(1), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rows += len(label)
    return rows


def first_feature_model():
    """A model that does no work: its prediction is the first feature column. Run through
    ``predict`` it measures everything but the model (W3's round trip)."""
    import torch

    class FirstFeature(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0]

    return FirstFeature()


def _ddl(name: str, columns: list[str], options: str) -> str:
    floats = ", ".join(f"{c} FLOAT" for c in columns)
    return f"CREATE TEMPORARY TABLE {name} ({floats}) WITH ({options})"


def _datagen(rows: int) -> str:
    return f"'connector'='datagen', 'number-of-rows'='{rows}', 'rows-per-second'='1000000000'"


def _csv(path: Path) -> str:
    return f"'connector'='filesystem', 'path'='{path}', 'format'='csv'"


def datagen_table_ddl(name: str, rows: int) -> str:
    """W1's columns generated inside the JVM (Flink's datagen source, as fast as it goes)."""
    return _ddl(name, [*FEATURES, "label"], _datagen(rows))


def csv_table_ddl(name: str, rows: int) -> str:
    return _ddl(name, [*FEATURES, "label"], _csv(csv_dir(rows)))


def ingest_source_ddl(name: str, rows: int, directory: Path | None) -> str:
    """The data-plane benchmarks' source: the 16 features, generated (``directory`` None)
    or read from the CSV files in ``directory``."""
    return _ddl(name, FEATURES, _datagen(rows) if directory is None else _csv(directory))


def ingest_env() -> tuple[Any, Any]:
    """A stream and a table environment with the data-plane benchmarks' Arrow batch and
    bundle sizes."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("python.fn-execution.arrow.batch.size", "10000")
    t_env.get_config().set("python.fn-execution.bundle.size", "100000")
    return env, t_env
