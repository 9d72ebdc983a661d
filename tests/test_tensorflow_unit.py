"""Unit: TF_CONFIG, TFConfig validation, the ordered-stop rules, Arrow -> dataset elements,
the TensorFlow model handler and nested files in the model store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from flink_dl.channel.features import check_feature_columns
from flink_dl.cluster.api import ClusterState, ClusterView, Event, EventKind, NodeState
from flink_dl.cluster.registry import get_rules
from flink_dl.errors import ConfigError
from flink_dl.models.store import ModelStore, TornModelError
from flink_dl.tensorflow import TFConfig, TFModelHandler, build_tf_config
from flink_dl.tensorflow.data import element_spec, to_element
from flink_dl.tensorflow.handler import keras_module_of
from flink_dl.tensorflow.tf_config import is_chief

S, N = ClusterState, NodeState


def _entry(ctx) -> None:
    return None


def test_tf_config_for_every_layout() -> None:
    spec = {"worker": ["h:1", "h:2"]}
    config = build_tf_config(spec, "worker", 1)
    assert config == {"cluster": {"worker": ["h:1", "h:2"]},
                      "task": {"type": "worker", "index": 1}}
    assert not is_chief(config) and is_chief(build_tf_config(spec, "worker", 0))
    spec = {"ps": ["h:9"], "worker": ["h:1", "h:2"], "chief": ["h:0"]}
    config = build_tf_config(spec, "ps", 0)
    assert list(config["cluster"]) == ["chief", "worker", "ps"]  # TensorFlow's order
    assert is_chief(build_tf_config(spec, "chief", 0))
    assert not is_chief(build_tf_config(spec, "worker", 0)), "a chief node outranks worker 0"
    with pytest.raises(ValueError, match=r"\['am'\]"):
        build_tf_config({"worker": ["h:1"], "am": ["h:2"]}, "worker", 0)
    with pytest.raises(ValueError, match="worker:2"):
        build_tf_config({"worker": ["h:1"]}, "worker", 2)


def test_tf_config_errors_name_the_key() -> None:
    cases = [
        ({"workers": 0}, "workers"), ({"workers": True}, "workers"), ({"ps": -1}, "ps"),
        ({"chief": 2}, "chief"), ({"chief": 1}, "chief=1 needs ps"),
        ({"epochs": 0}, "epochs"), ({"streaming": True, "epochs": 2}, "epochs"),
        ({"streaming": "yes"}, "streaming"), ({"entry": "no_such_module:f"}, "entry"),
        ({"export_every_steps": 0}, "export_every_steps"),
        ({"collective_timeout_s": 0}, "collective_timeout_s"),
    ]
    for overrides, key in cases:
        options = {"workers": 2, "entry": _entry, **overrides}
        with pytest.raises(ConfigError, match=key):
            TFConfig(**options).validate()


def test_cluster_config_roles_daemons_and_plugin() -> None:
    config = TFConfig(workers=2, ps=1, chief=1, entry=_entry, env={"A": "1"})
    cluster = config.cluster_config(_entry)
    cluster.validate()
    assert cluster.roles == {"chief": 1, "worker": 2, "ps": 1}
    assert cluster.daemon_roles == {"chief", "ps"}
    from flink_dl.cluster.registry import get_rules
    from flink_dl.tensorflow.rules import TensorFlowRules

    assert cluster.plugin == "flink_dl.tensorflow.rules:TensorFlowRules"
    assert isinstance(get_rules(cluster.plugin), TensorFlowRules)
    assert cluster.env["TF_USE_LEGACY_KERAS"] == "1" and cluster.env["A"] == "1"
    assert TFConfig(workers=3, entry=_entry).cluster_config(_entry).roles == {"worker": 3}


def _view(state: ClusterState, nodes: dict) -> ClusterView:
    roles: dict[str, int] = {}
    for role, _ in nodes:
        roles[role] = roles.get(role, 0) + 1
    return ClusterView(state=state, roles=roles, daemon_roles=frozenset({"chief", "ps"}),
                       nodes=nodes)


def test_rules_stop_the_chief_before_the_ps_nodes() -> None:
    rules = get_rules("tensorflow")
    nodes = {("chief", 0): N.RUNNING, ("worker", 0): N.FINISHED, ("worker", 1): N.RUNNING,
             ("ps", 0): N.RUNNING}
    view = _view(S.RUNNING, nodes)
    assert rules.transition(Event(EventKind.NODE_FINISHED, ("worker", 0)), view) is S.RUNNING
    assert not any(rules.should_stop(k, view) for k in nodes)
    nodes[("worker", 1)] = N.FINISHED
    assert rules.transition(Event(EventKind.NODE_FINISHED, ("worker", 1)), view) is S.FINISHING
    view.state = S.FINISHING
    assert rules.should_stop(("chief", 0), view)
    assert not rules.should_stop(("ps", 0), view), "the chief still reads the ps variables"
    nodes[("chief", 0)] = N.STOPPED
    assert rules.should_stop(("ps", 0), view)
    nodes[("ps", 0)] = N.STOPPED
    assert rules.transition(Event(EventKind.NODE_STOPPED, ("ps", 0)), view) is S.FINISHED
    failed = _view(S.FAILED, {("worker", 0): N.FAILED, ("ps", 0): N.RUNNING})
    assert rules.should_stop(("ps", 0), failed)


def test_rules_without_a_chief_stop_ps_when_workers_are_done() -> None:
    rules = get_rules("tensorflow")
    view = _view(S.FINISHING, {("worker", 0): N.FINISHED, ("ps", 0): N.RUNNING})
    assert rules.should_stop(("ps", 0), view)


def _batch() -> pa.RecordBatch:
    return pa.record_batch({
        "a": pa.array([1.0, 2.0, 3.0], pa.float32()), "b": pa.array([4, 5, 6], pa.int64()),
        "v": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], pa.list_(pa.float64())),
        "s": pa.array(["x", "y", "z"]), "label": pa.array([0, 1, 0], pa.int32()),
    })


def test_elements_and_their_specs_agree() -> None:
    batch = _batch()
    x, y = to_element(batch, ["a", "b"], "label", None)
    assert x.dtype == np.float32 and x.shape == (3, 2)
    np.testing.assert_array_equal(x[:, 1], [4, 5, 6])
    np.testing.assert_array_equal(y, [0, 1, 0])
    spec = element_spec(batch.schema, ["a", "b"], "label", None)
    assert spec[0].is_compatible_with(tf.constant(x))
    assert spec[1].is_compatible_with(tf.constant(y))
    (v,) = [to_element(batch, ["v"], None, None)]
    assert v.shape == (3, 2)
    assert element_spec(batch.schema, ["v"], None, None).is_compatible_with(tf.constant(v))
    columns = to_element(batch, None, None, None)
    specs = element_spec(batch.schema, None, None, None)
    assert set(columns) == set(specs) == {"a", "b", "v", "s", "label"}
    for name in columns:
        assert specs[name].is_compatible_with(tf.constant(columns[name])), name
    assert specs["s"].dtype == tf.string and specs["b"].dtype == tf.int64


def test_dataset_column_errors_name_the_columns() -> None:
    schema = _batch().schema
    with pytest.raises(ConfigError, match=r"dataset: column\(s\) \['nope'\]"):
        check_feature_columns(schema, ["a", "nope"], None, where="dataset")
    with pytest.raises(ConfigError, match=r"\['y'\]"):
        check_feature_columns(schema, ["a"], "y", where="dataset")
    with pytest.raises(ConfigError, match="label column 's' has Flink type STRING"):
        check_feature_columns(schema, ["a"], "s", where="dataset")


class _Scale(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable([[1.0, -1.0], [2.0, 0.5]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def __call__(self, x):
        return tf.matmul(x, self.w)


def test_handler_runs_a_saved_model_and_a_version_dir(tmp_path: Path) -> None:
    module = _Scale()
    tf.saved_model.save(module, str(tmp_path / "sm"))
    handler = TFModelHandler(tmp_path / "sm", ["a", "b"],
                             outputs={"p": pa.float32(), "q": pa.float32()})
    assert handler.model_dir() is None
    model = handler.load(None)
    columns = {"a": np.array([1.0, 2.0], np.float32), "b": np.array([3.0, 4.0], np.float32)}
    out = handler.run(model, columns)
    expected = module(np.stack([columns["a"], columns["b"]], 1)).numpy()
    np.testing.assert_allclose(out["p"], expected[:, 0], atol=1e-6)
    np.testing.assert_allclose(out["q"], expected[:, 1], atol=1e-6)
    store = ModelStore(tmp_path / "models")
    version = store.publish(lambda d: tf.saved_model.save(module, str(d / "saved_model")))
    following = TFModelHandler(tmp_path / "models", ["a", "b"],
                               outputs={"p": pa.float32(), "q": pa.float32()})
    assert following.model_dir() == str(tmp_path / "models")
    again = following.run(following.load(version), columns)
    np.testing.assert_allclose(again["p"], out["p"])
    with pytest.raises(ConfigError, match="no signature 'nope'"):
        TFModelHandler(tmp_path / "sm", ["a", "b"], signature="nope").load(None)
    with pytest.raises(ConfigError, match="does not exist"):
        TFModelHandler(tmp_path / "missing.keras", ["a"])


def test_keras_files_name_their_keras(tmp_path: Path) -> None:
    import keras
    import tf_keras

    k3 = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    k3.save(tmp_path / "k3.keras")
    k2 = tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(1)])
    k2.save(tmp_path / "k2.keras")
    assert keras_module_of(tmp_path / "k3.keras") == "keras"
    assert keras_module_of(tmp_path / "k2.keras") == "tf_keras"
    x = np.ones((3, 2), np.float32)
    for name, model in (("k3", k3), ("k2", k2)):
        handler = TFModelHandler(tmp_path / f"{name}.keras", ["a", "b"])
        out = handler.run(handler.load(None), {"a": x[:, 0], "b": x[:, 1]})
        np.testing.assert_allclose(out["prediction"], np.asarray(model(x))[:, 0], atol=1e-6)


def test_model_store_checks_nested_files(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)

    def write(directory: Path) -> None:
        (directory / "saved_model" / "variables").mkdir(parents=True)
        (directory / "saved_model" / "variables" / "v.data").write_bytes(b"x" * 100)
        (directory / "saved_model" / "saved_model.pb").write_bytes(b"pb")

    version = store.publish(write)
    assert set(version.files) == {"saved_model/variables/v.data", "saved_model/saved_model.pb"}
    (Path(version.path) / "saved_model" / "variables" / "v.data").write_bytes(b"y" * 100)
    with pytest.raises(TornModelError, match=r"v\.data"):
        store.open(version.version)
