"""Unit tests of the plugin contract (``flink_dl.training``) and the rules both plugins share:
feature types, epochs, checkpoints, warm starts, the empty-input rule, teardown errors."""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from flink_dl.channel.codecs import get_codec
from flink_dl.channel.features import (
    check_feature_columns,
    feature_matrix,
    flink_type_name,
    numeric_column,
)
from flink_dl.channel.node_io import NodeInput
from flink_dl.channel.ring import Ring
from flink_dl.errors import (
    ConfigError,
    EmptyInputError,
    FeatureTypeError,
    InputEpochError,
    MissingColumnError,
)
from flink_dl.models.store import ModelStore
from flink_dl.pytorch.config import TorchConfig
from flink_dl.tensorflow.config import TFConfig
from flink_dl.training.checkpoints import CheckpointDir, resolve_init_from
from flink_dl.training.config import TrainingConfig
from flink_dl.training.context import TrainingContext
from flink_dl.training.entry import TrainingEntry
from flink_dl.training.options import TrainingOptions


def _entry(ctx: object) -> None:
    pass


# ---------------------------------------------------------------- feature types
def _typed_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([
        pa.array([1, 2, 3], pa.int8()), pa.array([10, 20, 30], pa.int64()),
        pa.array([0.5, 1.5, 2.5], pa.float32()),
        pa.array([decimal.Decimal("1.0"), decimal.Decimal("0.0"), decimal.Decimal("1.5")],
                 pa.decimal128(2, 1)),
        pa.array([True, False, True]), pa.array(["a", "b", "a"]),
        pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], pa.list_(pa.float32())),
    ], names=["tiny", "big", "f", "dec", "flag", "city", "vec"])


def test_every_numeric_type_is_a_feature_cast_to_the_tensor_dtype() -> None:
    batch = _typed_batch()
    x = feature_matrix(batch, ["tiny", "big", "f", "dec", "flag"])
    assert x.dtype == np.float32 and x.shape == (3, 5)
    assert x.tolist() == [[1, 10, 0.5, 1.0, 1], [2, 20, 1.5, 0.0, 0], [3, 30, 2.5, 1.5, 1]]
    assert numeric_column("dec", batch.column("dec")).dtype == np.float64
    assert feature_matrix(batch, ["vec"]).tolist() == [[1, 2], [3, 4], [5, 6]]


def test_a_feature_of_the_tensor_dtype_is_not_copied() -> None:
    batch = _typed_batch()
    x = feature_matrix(batch, ["f"])
    buffer = np.frombuffer(batch.column("f").buffers()[1], dtype=np.float32)
    assert np.shares_memory(x, buffer)


def test_a_non_numeric_feature_is_refused_naming_column_and_flink_type() -> None:
    schema = _typed_batch().schema
    with pytest.raises(FeatureTypeError, match=r"feature column 'city' has Flink type STRING"):
        check_feature_columns(schema, ["f", "city"], None, where="train")
    with pytest.raises(FeatureTypeError, match=r"label column 'city'"):
        check_feature_columns(schema, ["f"], "city", where="train")
    with pytest.raises(MissingColumnError, match=r"\['nope'\] are not in the input"):
        check_feature_columns(schema, ["f", "nope"], None, where="train")
    check_feature_columns(schema, ["tiny", "big", "f", "dec", "flag", "vec"], "dec",
                          where="train")
    assert flink_type_name(pa.decimal128(2, 1)) == "DECIMAL(2, 1)"
    assert flink_type_name(pa.timestamp("us")) == "TIMESTAMP"
    # The error types are the shared ones: a ConfigError (ValueError) and a TypeError.
    assert issubclass(FeatureTypeError, ConfigError) and issubclass(FeatureTypeError, TypeError)
    assert issubclass(MissingColumnError, KeyError)


def test_torch_tensors_and_tf_elements_follow_the_same_rule() -> None:
    import tensorflow as tf
    import torch

    from flink_dl.pytorch.data import to_tensors
    from flink_dl.tensorflow.data import element_spec, to_element

    batch = _typed_batch()
    tensors = to_tensors(batch, features=["dec", "flag", "tiny"], label="dec")
    assert tensors["features"].dtype == torch.float32
    assert tensors["features"].tolist() == [[1, 1, 1], [0, 0, 2], [1.5, 1, 3]]
    assert tensors["label"].dtype == torch.float64
    x, y = to_element(batch, ["dec", "flag", "tiny"], "flag", None)
    assert x.tolist() == tensors["features"].tolist() and y.tolist() == [True, False, True]
    spec = element_spec(batch.schema, ["dec", "flag"], "dec", None)
    assert spec[0].dtype == tf.float32 and spec[1].dtype == tf.float64
    with pytest.raises(FeatureTypeError, match="'city'"):
        to_tensors(batch, features=["city"])
    with pytest.raises(FeatureTypeError, match="'city'"):
        to_element(batch, ["f", "city"], None, None)


# ---------------------------------------------------------------- epochs
def _reader(tmp_path: Path, name: str, epochs: int) -> tuple[Ring, NodeInput]:
    ring = Ring.create(name, capacity=1 << 20)
    codec = get_codec("arrow")
    for i in range(4):
        ring.send(codec.encode(pa.RecordBatch.from_pydict({"id": list(range(i * 10,
                                                                            i * 10 + 10))})))
    ring.send_end()
    return ring, NodeInput(Ring(ring.handle), codec, epochs=epochs, work_dir=tmp_path)


def test_a_new_loader_per_epoch_reads_the_next_epoch(tmp_path: Path) -> None:
    ring, reader = _reader(tmp_path, "t-per-epoch", 3)
    seen = []
    for _ in range(3):  # the Ray Train habit: a new iterator each epoch
        seen.append(sum(len(b) for b in reader.next_epoch()))
    assert seen == [40, 40, 40]
    assert reader.first_pass_rows == 40
    with pytest.raises(InputEpochError, match=r"has 3 epoch\(s\).*epoch 4 was asked for"):
        reader.next_epoch()
    ring.close()


def test_epochs_is_one_shared_sequence_and_misuse_is_named(tmp_path: Path) -> None:
    ring, reader = _reader(tmp_path, "t-shared", 3)
    first = next(iter(reader.epochs()))
    assert first.number == 0
    assert [e.number for e in reader.epochs()] == [1, 2]  # epochs() again goes on
    ring.close()

    ring, reader = _reader(tmp_path, "t-nested", 2)
    outer = iter(reader.next_epoch())
    next(outer)
    with pytest.raises(InputEpochError, match="still being iterated"):
        reader.next_epoch()  # an epoch loop inside another epoch's loop
    outer.close()  # breaking out of the loop closes it: the next epoch may start
    second = reader.next_epoch()
    assert sum(len(b) for b in second) == 40
    with pytest.raises(InputEpochError, match="already iterated"):
        iter(second)
    ring.close()


def test_an_unfinished_epoch_is_drained_and_counts_its_rows(tmp_path: Path) -> None:
    ring, reader = _reader(tmp_path, "t-drain", 2)
    for batch in reader.next_epoch():
        assert len(batch) == 10
        break
    counted: list[int] = []
    reader.on_first_pass_end = counted.append
    assert sum(len(b) for b in reader.next_epoch()) == 40  # the replay holds all 40
    assert counted == [40] and reader.first_pass_rows == 40
    ring.close()


# ---------------------------------------------------------------- one config contract
SHARED_FIELDS = {f.name for f in dataclasses.fields(TrainingConfig)}


def test_both_configs_share_every_training_field_with_one_default() -> None:
    torch_fields = {f.name: f for f in dataclasses.fields(TorchConfig)}
    tf_fields = {f.name: f for f in dataclasses.fields(TFConfig)}
    assert set(torch_fields) >= SHARED_FIELDS and set(tf_fields) >= SHARED_FIELDS
    expected = {"entry", "epochs", "properties", "model_dir", "init_from", "features", "label",
                "allow_empty_input", "export_every_steps", "export_every_s", "keep_versions",
                "keep_checkpoints", "env", "timeouts", "channel_capacity",
                "collective_timeout_s", "restart", "bind_host", "advertise_host",
                "rendezvous", "rendezvous_dir", "name", "job_id", "secret"}
    assert expected <= SHARED_FIELDS
    torch_config = TorchConfig(world_size=2, entry=_entry)
    tf_config = TFConfig(workers=2, entry=_entry)
    for name in SHARED_FIELDS - {"name", "job_id", "secret"}:
        assert getattr(torch_config, name) == getattr(tf_config, name), name
    assert set(torch_fields) - SHARED_FIELDS == {"world_size", "backend"}
    assert set(tf_fields) - SHARED_FIELDS == {"workers", "ps", "chief", "streaming"}


@pytest.mark.parametrize("overrides,key", [
    ({"epochs": 0}, "epochs"), ({"export_every_steps": 0}, "export_every_steps"),
    ({"export_every_s": -1.0}, "export_every_s"), ({"keep_versions": 0}, "keep_versions"),
    ({"keep_checkpoints": 0}, "keep_checkpoints"), ({"entry": "no.such:fn"}, "entry"),
    ({"collective_timeout_s": 0}, "collective_timeout_s"), ({"features": "x"}, "features"),
    ({"label": 3}, "label"), ({"allow_empty_input": "yes"}, "allow_empty_input"),
    ({"channel_capacity": 1000}, "channel_capacity"), ({"init_from": 5}, "init_from"),
    ({"timeouts": {"nope": 1}}, "timeouts.nope"), ({"restart": -1}, "restart.attempts"),
    ({"bind_host": ""}, "bind_host"), ({"input_bundle_ms": 0}, "input_bundle_ms"),
    ({"input_bundle_ms": 2.5}, "input_bundle_ms"),
])
def test_both_configs_reject_the_same_bad_value_naming_the_key(overrides: dict[str, Any],
                                                               key: str) -> None:
    settings = {"entry": _entry, **overrides}
    for config in (TorchConfig(world_size=2, **settings), TFConfig(workers=2, **settings)):
        with pytest.raises(ConfigError, match=key):
            config.validate()


def test_placement_settings_reach_the_cluster_config() -> None:
    for config in (TorchConfig(world_size=2, entry=_entry, bind_host="0.0.0.0",
                               advertise_host="10.0.0.7", rendezvous_dir="/shared/rdv"),
                   TFConfig(workers=2, ps=1, entry=_entry, bind_host="0.0.0.0",
                            advertise_host="10.0.0.7", rendezvous_dir="/shared/rdv")):
        cluster = config.cluster_config(_entry)
        assert (cluster.bind_host, cluster.advertise_host, cluster.rendezvous_dir) == (
            "0.0.0.0", "10.0.0.7", "/shared/rdv")
        assert cluster.job_id == config.job_id and cluster.secret == config.secret


# ---------------------------------------------------------------- checkpoints
def test_checkpoints_belong_to_their_job_and_are_pruned(tmp_path: Path) -> None:
    def write(text: str) -> Any:
        return lambda path: path.write_text(text)

    job_a = CheckpointDir(tmp_path, "job-a", keep=2)
    for step in (10, 20, 30):
        job_a.write(write(f"a{step}"), step=step, attempt=0, suffix="pt")
    job_a.write(write("a30-retry"), step=30, attempt=1, suffix="pt")
    names = [p.name for p in job_a.all("pt")]
    assert names == ["ckpt-000000000030-a000.pt", "ckpt-000000000030-a001.pt"]
    assert job_a.newest("pt").read_text() == "a30-retry"
    assert CheckpointDir(tmp_path, "job-b").newest("pt") is None  # a new job starts fresh
    assert not [p for p in job_a.path.iterdir() if p.name.startswith(".")]


def test_init_from_resolves_to_one_verified_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    for text in ("one", "two"):
        store.publish(lambda d, t=text: (d / "m.bin").write_text(t))
    assert resolve_init_from(tmp_path / "models", "TorchConfig").version == 2
    assert resolve_init_from(tmp_path / "models" / "v000001", "TFConfig").version == 1
    with pytest.raises(ConfigError, match=r"TorchConfig\(init_from=.*no such directory"):
        resolve_init_from(tmp_path / "nothing", "TorchConfig")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no published version"):
        resolve_init_from(tmp_path / "empty", "TFConfig")
    (tmp_path / "models" / "v000002" / "m.bin").write_text("torn")
    with pytest.raises(ConfigError, match="cannot open the model version"):
        resolve_init_from(tmp_path / "models", "TorchConfig")


# ---------------------------------------------------------------- empty input, teardown
class _FakeNode:
    """Just what ``TrainingContext`` reads of a node: a one-node job without input."""

    channels: dict[str, Any] = {}
    properties: dict[str, str] = {}
    job_id = "job"
    attempt = 0
    epoch = 0
    cluster_spec = {"worker": ["h:1"]}


class _CountingContext(TrainingContext):
    config_name = "TorchConfig"
    rows: int | None = 0

    def _own_first_pass_rows(self) -> int | None:
        return self.rows

    def write_model(self, model: Any, directory: Path, **options: Any) -> None:
        (directory / "model.txt").write_text(str(model))

    def load_weights(self, model: Any, version: Any) -> None:
        raise AssertionError("not called here")

    def _emit(self, kind: str, **fields: Any) -> None:
        pass


def test_an_empty_input_publishes_nothing(tmp_path: Path) -> None:
    options = TrainingOptions(model_dir=str(tmp_path / "m"), allow_empty_input=False)
    ctx = _CountingContext(_FakeNode(), options)  # type: ignore[arg-type]
    with pytest.raises(EmptyInputError, match="allow_empty_input=True"):
        ctx.save_model("untrained")
    assert ModelStore(tmp_path / "m").latest_number() is None
    allowed = _CountingContext(_FakeNode(), dataclasses.replace(  # type: ignore[arg-type]
        options, allow_empty_input=True))
    assert allowed.save_model("untrained") is None
    assert ModelStore(tmp_path / "m").latest_number() is None
    allowed.rows = 3
    assert allowed.save_model("trained").version == 1


def test_a_failing_teardown_never_hides_the_users_error() -> None:
    class Entry(TrainingEntry):
        @contextlib.contextmanager
        def session(self, node: Any) -> Iterator[Any]:
            try:
                yield "ctx"
            finally:
                from flink_dl.training.entry import teardown

                teardown(lambda: (_ for _ in ()).throw(OSError(9, "Bad file descriptor")),
                         "closing the store")

    import cloudpickle

    def fails(ctx: Any) -> None:
        raise ValueError("the user's own error")

    with pytest.raises(ValueError, match="the user's own error"):
        Entry(cloudpickle.dumps(fails), {})(None)  # type: ignore[arg-type]
    assert Entry(cloudpickle.dumps(lambda ctx: 7), {})(None) == 7  # type: ignore[arg-type]


_NO_DDP_RANK0 = r"""
import json, socket, sys
from flink_dl.cluster.context import NodeContext
from flink_dl.pytorch.process_group import destroy_process_group, init_process_group
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
spec = {"worker": [f"127.0.0.1:{sock.getsockname()[1]}"]}
node = NodeContext(role="worker", index=0, cluster_spec=spec, properties={}, job_id="j",
                   attempt=0, work_dir=sys.argv[1], reserved_fd=sock.detach())
group = init_process_group(node, "gloo", 30, 30)
group.store.set("k", "v")                       # an entry that builds no DDP model
destroy_process_group()
print(json.dumps({"ok": True, "backend": group.backend}))
"""


def test_rank_zero_without_a_ddp_model_tears_down_cleanly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _NO_DDP_RANK0, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"ok": True, "backend": "gloo"}
    assert "Bad file descriptor" not in done.stderr


def test_warm_start_loads_the_version_in_both_frameworks(tmp_path: Path) -> None:
    import torch

    from flink_dl.pytorch.context import TorchContext

    store = ModelStore(tmp_path / "torch")
    trained = torch.nn.Linear(3, 1)
    version = store.publish(lambda d: TorchContext.write_model(  # type: ignore[arg-type]
        _DeviceOnly(), trained, d))
    fresh = torch.nn.Linear(3, 1)
    TorchContext.load_weights(None, fresh, version)  # type: ignore[arg-type]
    assert torch.equal(fresh.weight, trained.weight) and torch.equal(fresh.bias, trained.bias)

    import tensorflow as tf

    from flink_dl.tensorflow.context import TFContext, write_model

    def keras_model() -> Any:
        return tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])

    source = keras_model()
    tf_version = ModelStore(tmp_path / "tf").publish(lambda d: write_model(source, d))
    target = keras_model()
    TFContext.load_weights(None, target, tf_version)  # type: ignore[arg-type]
    for got, want in zip(target.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


class _DeviceOnly:
    device = "cpu"
