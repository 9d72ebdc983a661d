"""Integration: PyTorch training and inference as real Flink jobs (mini-cluster, real
child processes, gloo process groups, shared-memory channels)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pyflink.common.typeinfo import Types
from pyflink.datastream import MapFunction
from pyflink.table import StreamTableEnvironment

import flink_dl
from examples import digits, streaming
from flink_dl.flink.clusters import cluster_configs_of
from flink_dl.models import ModelStore
from flink_dl.pytorch import TorchConfig, TorchModelHandler, predict, predict_distributed, train
from tests import torch_entries
from tests.leftovers import wait_clean


def _weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_digits_two_workers_accuracy_exactly_once_identical_weights(process_env,
                                                                     tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    audit.mkdir()
    epochs = 12
    events = digits.train(str(tmp_path / "models"), workers=2, epochs=epochs,
                          properties={"audit_dir": str(audit)}, env=process_env)

    train_ids = set(digits.load_split()[0]["id"].tolist())
    for epoch in range(epochs):
        per_rank = [np.load(audit / f"ids-rank{r}-epoch{epoch}.npy") for r in (0, 1)]
        assert all(len(ids) > 0 for ids in per_rank), "both ranks get data"
        together = np.concatenate(per_rank)
        assert len(together) == len(train_ids), f"epoch {epoch}: a sample seen twice or never"
        assert set(together.tolist()) == train_ids
    weights = [torch.load(audit / f"weights-rank{r}.pt") for r in (0, 1)]
    assert _weights_equal(*weights), "the ranks ended with different weights"

    models = [e for e in events if e["kind"] == "model"]
    assert len(models) == 1 and models[0]["version"] == 1
    assert {e["epoch"] for e in events if e["kind"] == "metrics"} == set(range(epochs))
    saved = torch.load(Path(models[0]["path"]) / "model.pt")
    assert _weights_equal(saved, weights[0])

    accuracy, rows = digits.evaluate(str(tmp_path / "models"), env=process_env)
    assert rows == len(digits.load_split()[1])
    assert accuracy >= 0.95, accuracy


def _linear_table(t_env: StreamTableEnvironment, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)).astype(np.float32), columns=list("abcd"))
    frame["y"] = (2 * frame.a - frame.b + 0.5 * frame.c).astype(np.float32)
    frame.insert(0, "id", np.arange(rows, dtype=np.int64))
    return frame, t_env.from_pandas(frame)


def test_uneven_shares_do_not_hang_ddp(process_env, tmp_path: Path) -> None:
    t_env = StreamTableEnvironment.create(process_env)
    _, table = _linear_table(t_env, 4000)
    config = TorchConfig(world_size=2, entry=torch_entries.uneven, epochs=2,
                         properties={"out": str(tmp_path)},
                         timeouts={"registration": 120})
    train(process_env, table, config)
    # A hang fails here: execute cancels the job and raises ClusterTimeoutError at 240 s.
    flink_dl.execute(process_env, "uneven", timeout_s=240)
    steps = [json.loads((tmp_path / f"steps-{r}.json").read_text())["steps"] for r in (0, 1)]
    assert steps[1] == 4 and steps[0] > 4 * 10, steps  # rank 0 ran far longer
    weights = [torch.load(tmp_path / f"weights-{r}.pt") for r in (0, 1)]
    assert _weights_equal(*weights), "joined ranks must stay in sync"
    assert not wait_clean(config.job_id)


def _save_model(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    return model, path


def _factory() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def test_predict_equals_calling_the_model(process_env, tmp_path: Path) -> None:
    model, path = _save_model(tmp_path)
    t_env = StreamTableEnvironment.create(process_env)
    frame, table = _linear_table(t_env, 600)
    handler = TorchModelHandler(path, list("abcd"), factory=_factory, batch_size=128)
    result = predict(table, handler)
    assert result.get_schema().get_field_names() == ["id", "a", "b", "c", "d", "y",
                                                     "prediction"]
    with result.execute().collect() as rows:
        got = {r[0]: r[6] for r in rows}
    expected = model(torch.from_numpy(frame[list("abcd")].to_numpy())).detach().numpy()[:, 0]
    assert len(got) == len(frame)
    np.testing.assert_allclose([got[i] for i in range(len(frame))], expected, atol=1e-6)

    # The same model through an ML cluster of 2 predictor processes.
    stream = predict_distributed(process_env, table, handler, nodes=2)
    with stream.execute_and_collect("predict-distributed") as rows:
        dist_got = {r.id: r.prediction for r in rows}
    assert len(dist_got) == len(frame)
    np.testing.assert_allclose([dist_got[i] for i in range(len(frame))], expected, atol=1e-6)


class _AppendJson(MapFunction):
    """Appends each row, as JSON, to a file (the test reads it while the job runs)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def map(self, value):
        with open(self.path, "a") as handle:
            handle.write(json.dumps(value.as_dict()) + "\n")
        return 0


def _read_json_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_streaming_training_publishes_versions_and_predictor_follows(process_env,
                                                                      tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    events, scored = streaming.build(process_env, str(model_dir), export_every_steps=60,
                                     train_rows_per_s=3000, predict_rows_per_s=20)
    events_file, scored_file = tmp_path / "events.jsonl", tmp_path / "scored.jsonl"
    events.map(_AppendJson(str(events_file)), output_type=Types.INT())
    scored.map(_AppendJson(str(scored_file)), output_type=Types.INT())

    stop = threading.Event()
    loads: list[int] = []
    torn: list[BaseException] = []

    def read_models() -> None:  # a concurrent reader: must never load a torn model
        store = ModelStore(model_dir)
        while not stop.is_set():
            if store.latest_number() is None:
                time.sleep(0.05)
                continue
            try:
                version = store.open()
                state = torch.load(version.file("model.pt"))
                assert set(state) == {"weight", "bias"}
                loads.append(version.version)
            except BaseException as exc:
                torn.append(exc)

    reader = threading.Thread(target=read_models, daemon=True)
    reader.start()
    def model_events() -> list[dict]:
        return [r for r in _read_json_lines(events_file) if r["kind"] == "model"]

    # Rows leave a running job only when Flink flushes the operator's output (bundle
    # end), and a cancel drops what is still in flight: wait until each stream has shown
    # what the asserts below need, then cancel.
    client = process_env.execute_async("streaming")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            versions = {r["model_version"] for r in _read_json_lines(scored_file)}
            published = ModelStore(model_dir).version_numbers()
            emitted = {e["version"] for e in model_events()}
            if len(published) >= 3 and len(versions) >= 2 and len(emitted) >= 2:
                break
            assert not client.get_job_execution_result().done(), "the job ended"
            time.sleep(1)
        else:
            pytest.fail(f"within 240 s: {len(published)} of 3 model versions published, "
                        f"{len(versions)} of 2 versions used by the predictor, "
                        f"{len(emitted)} of 2 model events in the output stream")
        status = client.get_job_status().result().name
    finally:
        stop.set()
        client.cancel().result()
        reader.join()
        flink_dl.cleanup(process_env)
    assert status == "RUNNING", status  # the predictor switched versions without a restart
    store = ModelStore(model_dir)
    published = store.version_numbers()
    assert len(published) >= 3
    scored_rows = _read_json_lines(scored_file)
    tags = [r["model_version"] for r in scored_rows]
    assert len(set(tags)) >= 2 and max(tags) > min(tags)
    assert set(tags) <= set(published), "predictions are tagged with published versions"
    assert all(set(r) == {"x0", "x1", "x2", "x3", "y", "prediction", "model_version"}
               for r in scored_rows)
    # Model versions also leave the job as a stream: one event per version, in order from
    # v1 (the rows of a running job are neither lost nor duplicated), each naming the
    # version directory that the store holds, written by rank 0 of attempt 0.
    version_events = model_events()
    numbers = [e["version"] for e in version_events]
    assert len(numbers) >= 2
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert set(numbers) <= set(published)
    assert all(e["path"] == store.open(e["version"], verify=False).path
               and e["rank"] == 0 and e["attempt"] == 0 for e in version_events), \
        version_events
    assert not torn, torn[:1]
    assert loads, "the concurrent reader loaded models"
    for config in cluster_configs_of(process_env):
        assert not wait_clean(config.job_id)
