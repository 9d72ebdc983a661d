"""Unit tests of the pure parts of the PyTorch plugin and the model store."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from flink_dl import ConfigError
from flink_dl.channel.arrays import NullValueError
from flink_dl.cluster.context import NodeContext
from flink_dl.models import ModelStore, TornModelError
from flink_dl.pytorch import TorchConfig, TorchModelHandler
from flink_dl.pytorch.data import FEATURES, LABEL, rechunk, to_tensors
from flink_dl.pytorch.process_group import torchrun_env


def _batches(sizes: list[int]) -> list[pa.RecordBatch]:
    out, start = [], 0
    for size in sizes:
        ids = np.arange(start, start + size, dtype=np.int64)
        out.append(pa.record_batch({"id": ids, "x": ids.astype(np.float32)}))
        start += size
    return out


def test_rechunk_exact_sizes_and_every_row_once() -> None:
    tables = list(rechunk(iter(_batches([5, 7, 1, 10])), 4, drop_last=False))
    assert [t.num_rows for t in tables] == [4, 4, 4, 4, 4, 3]
    ids = np.concatenate([t.column("id").to_numpy() for t in tables])
    assert ids.tolist() == list(range(23))
    assert [t.num_rows for t in rechunk(iter(_batches([5, 7])), 4, drop_last=True)] == [4, 4, 4]


def test_tensors_share_the_arrow_buffer() -> None:
    batch = _batches([1024])[0]
    tensors = to_tensors(pa.Table.from_batches([batch]))
    address = batch.column("x").buffers()[1].address
    assert tensors["x"].data_ptr() == address  # no copy
    first = next(rechunk(iter([batch]), 512, drop_last=False))
    assert first.num_rows == 512
    assert to_tensors(first)["x"].data_ptr() == address


def test_list_column_becomes_a_2d_tensor_without_copy() -> None:
    values = np.arange(12, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(values), 3)
    batch = pa.record_batch({"v": pa.array(column.to_pylist(), pa.list_(pa.float32())),
                             "y": pa.array([0, 1, 2, 3], pa.int64())})
    out = to_tensors(batch, features=["v"], label="y")
    assert out[FEATURES].shape == (4, 3)
    assert torch.equal(out[FEATURES][1], torch.tensor([3.0, 4.0, 5.0]))
    assert out[LABEL].tolist() == [0, 1, 2, 3]


def test_features_are_stacked_and_errors_name_the_column() -> None:
    batch = pa.record_batch({"a": pa.array([1.0, 2.0], pa.float64()),
                             "b": pa.array([3.0, 4.0], pa.float32()),
                             "n": pa.array([1.0, None], pa.float32())})
    out = to_tensors(batch, features=["a", "b"])
    assert out[FEATURES].dtype == torch.float32
    assert out[FEATURES].tolist() == [[1.0, 3.0], [2.0, 4.0]]
    with pytest.raises(NullValueError, match="'n'"):
        to_tensors(batch, features=["a", "n"])
    with pytest.raises(KeyError, match="zzz"):
        to_tensors(batch, features=["zzz"])


def _write_file(name: str, data: bytes):
    def write(directory: Path) -> None:
        (directory / name).write_bytes(data)
    return write


def test_model_store_publishes_versions_atomically(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    assert store.latest_number() is None
    v1 = store.publish(_write_file("m.bin", b"one"), step=10, metrics={"loss": 0.5})
    v2 = store.publish(_write_file("m.bin", b"two"), step=20)
    assert (v1.version, v2.version) == (1, 2)
    assert store.latest_number() == 2
    assert store.open().file("m.bin").read_bytes() == b"two"
    assert store.open(1).metrics == {"loss": 0.5}
    assert [v.step for v in store.versions()] == [10, 20]
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]


def test_model_store_detects_a_torn_file_and_prunes(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, keep_last=2)
    for i in range(4):
        store.publish(_write_file("m.bin", bytes([i]) * 100))
    assert store.version_numbers() == [3, 4]
    (tmp_path / "v000004" / "m.bin").write_bytes(b"half")
    with pytest.raises(TornModelError, match=r"'m\.bin'"):
        store.open(4)


def test_model_store_failed_writer_leaves_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)

    def broken(directory: Path) -> None:
        (directory / "m.bin").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.publish(broken)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_reader_never_sees_a_partial_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    payloads = [bytes([i]) * 2_000_000 for i in range(1, 12)]
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        reader = ModelStore(tmp_path)
        while not stop.is_set():
            if reader.latest_number() is None:
                continue
            try:
                version = reader.open()
                data = version.file("m.bin").read_bytes()
                assert data == payloads[version.version - 1]
                seen.append(version.version)
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    for payload in payloads:
        store.publish(_write_file("m.bin", payload))
    stop.set()
    thread.join()
    assert not errors
    assert seen and sorted(seen) == seen


def test_torch_config_errors_name_the_key() -> None:
    def entry(ctx: object) -> None:
        pass

    cases = [
        (dict(world_size=0), "world_size"), (dict(epochs=0), "epochs"),
        (dict(backend="mpi"), "backend"), (dict(export_every_steps=0), "export_every_steps"),
        (dict(export_every_s=-1.0), "export_every_s"), (dict(keep_versions=0), "keep_versions"),
        (dict(entry="no.such.module:fn"), "entry"),
    ]
    for overrides, key in cases:
        kwargs = dict(world_size=2, entry=entry) | overrides
        with pytest.raises(ConfigError, match=key):
            TorchConfig(**kwargs).validate()


def test_torchrun_env_from_the_cluster_spec() -> None:
    spec = {"worker": ["10.0.0.1:4000", "10.0.0.1:4001", "10.0.0.2:4000"]}
    ctx = NodeContext("worker", 2, spec, {}, "job", 0, "/tmp")
    env = torchrun_env(ctx)
    assert env["MASTER_ADDR"] == "10.0.0.1" and env["MASTER_PORT"] == "4000"
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"]) == \
        ("2", "3", "0", "1")
    assert torchrun_env(NodeContext("worker", 1, spec, {}, "job", 0, "/tmp"))["LOCAL_RANK"] \
        == "1"


def test_handler_loads_state_dict_and_torchscript_and_splits_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    expected = model(torch.from_numpy(x)).detach().numpy()
    cols = {f"f{i}": x[:, i] for i in range(3)}
    def factory() -> torch.nn.Module:
        return torch.nn.Linear(3, 2)

    handler = TorchModelHandler(tmp_path / "m.pt", list(cols), factory=factory,
                                outputs={"a": pa.float32(), "b": pa.float32()})
    out = handler.run(handler.load(None), cols)
    np.testing.assert_allclose(out["a"], expected[:, 0], atol=1e-6)
    np.testing.assert_allclose(out["b"], expected[:, 1], atol=1e-6)
    with pytest.raises(ConfigError, match="factory"):
        TorchModelHandler(tmp_path / "m.pt", ["f0"]).load(None)
    with pytest.raises(ConfigError, match="does not exist"):
        TorchModelHandler(tmp_path / "missing.pt", ["f0"])
    single = TorchModelHandler(tmp_path / "m.pt", list(cols), factory=factory)
    with pytest.raises(ValueError, match=r"shape \(5, 2\)"):
        single.run(single.load(None), cols)


def test_predict_schema_errors_name_the_columns(tmp_path: Path) -> None:
    from flink_dl.inference.api import appended_schema

    torch.save(torch.nn.Linear(2, 1).state_dict(), tmp_path / "m.pt")
    handler = TorchModelHandler(tmp_path / "m.pt", ["a", "zz"])
    schema = pa.schema([("a", pa.float32()), ("prediction", pa.float32())])
    with pytest.raises(ConfigError, match="'zz'"):
        appended_schema(handler, schema, "predict")
    handler = TorchModelHandler(tmp_path / "m.pt", ["a"])
    with pytest.raises(ConfigError, match="'prediction'"):
        appended_schema(handler, schema, "predict")
    assert appended_schema(handler, pa.schema([("a", pa.float32())]), "predict").names == \
        ["prediction"]
