"""Pipeline stages without running a job: arguments, SQL text, JSON round trips, grouping."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pyarrow as pa
import pytest

from flink_dl.errors import ConfigError, MissingColumnError
from flink_dl.pipeline import (
    Bucketizer,
    Imputer,
    OneHotEncoder,
    OneHotEncoderModel,
    SQLTransform,
    StandardScaler,
    StandardScalerModel,
    StringIndexer,
    StringIndexerModel,
)
from flink_dl.pipeline.api import stage_class
from flink_dl.pipeline.learners import arrow_type_name, expand_features, parse_arrow_type
from flink_dl.pipeline.pipeline import _independent_group
from flink_dl.pipeline.sql import Column, double_literal, quote
from flink_dl.pipeline.stages.categorical import column_suffix


def test_double_literals_read_back_as_the_same_double() -> None:
    rng = np.random.default_rng(0)
    for value in [*rng.normal(size=200) * 10.0 ** rng.integers(-300, 300, 200), 0.1, -0.0,
                  5e-324, 1.7976931348623157e308]:
        text = double_literal(value)
        assert "E" in text
        assert struct.pack("<d", float(text.replace("E", "e"))) == struct.pack("<d", value)
    assert double_literal(math.inf) == "CAST('Infinity' AS DOUBLE)"
    assert double_literal(float("nan")) == "CAST('NaN' AS DOUBLE)"
    assert quote("we`ird") == "`we``ird`"


@pytest.mark.parametrize("build, message", [
    (lambda: StandardScaler("x"), "input_cols must be a non-empty list"),
    (lambda: StandardScaler(["x", "x"]), "names a column twice"),
    (lambda: StandardScaler(["x"], ["a", "b"]), "output_cols has 2 names for 1 input_cols"),
    (lambda: StringIndexer(["c"], handle_invalid="ignore"), "handle_invalid must be one of"),
    (lambda: StringIndexer(["c"], string_order_type="random"), "string_order_type"),
    (lambda: Imputer(["x"], strategy="mode"), "strategy must be one of"),
    (lambda: Bucketizer(["x"], [[0.0, 0.0, 1.0]]), "must increase strictly"),
    (lambda: Bucketizer(["x"], [[0.0]]), "needs at least 2 splits"),
    (lambda: SQLTransform("SELECT * FROM t"), "FROM __THIS__"),
])
def test_bad_arguments_fail_naming_stage_and_argument(build, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_models_round_trip_through_json() -> None:
    models = [
        StandardScalerModel(["a", "b"], [1.5, -2.0], [0.25, 0.0], output_cols=["x", "y"]),
        StringIndexerModel(["c"], [["b", "a"]], handle_invalid="keep"),
        OneHotEncoderModel(["c"], [["x y", "z"]], drop_last=True),
        Bucketizer(["v"], [[-math.inf, 0.0, math.inf]]),
        SQLTransform("SELECT *, a + 1 AS a1 FROM __THIS__"),
    ]
    for model in models:
        saved = json.loads(json.dumps(model.to_json()))
        again = stage_class(saved["kind"]).from_json(saved["params"], saved["data"], None)
        assert again.to_json() == model.to_json()


def test_sql_of_fitted_stages() -> None:
    scaler = StandardScalerModel(["a"], [1.5], [0.0])
    exprs, condition = scaler.column_sql(0, Column("a", "INT", "INTEGER"))
    ((out, sql),) = exprs
    assert condition is None
    assert out == "a" and "/ " not in sql  # a zero std only centres
    assert "(CAST(`a` AS DOUBLE) - 1.5E0)" in sql and "IS NULL THEN CAST(CONCAT(" in sql
    onehot = OneHotEncoderModel(["c"], [["red", "dark blue"]], handle_invalid="skip")
    exprs, condition = onehot.column_sql(0, Column("c", "STRING", "VARCHAR"))
    assert [name for name, _ in exprs] == ["c_red", "c_dark_blue"]
    assert condition == "`c` IN ('red', 'dark blue')"
    assert column_suffix("a-b c") == "a_b_c"


def test_fit_groups_only_independent_estimators() -> None:
    columns = {n: Column(n, "DOUBLE", "DOUBLE") for n in ["a", "b", "c"]}
    stages = [Imputer(["a"]), StandardScaler(["b"]), StandardScaler(["a"]),
              OneHotEncoder(["c"], handle_invalid="skip"), StandardScaler(["b"], ["b2"])]
    assert _independent_group(stages, 0, columns) == stages[:2]   # the 3rd reads a
    assert _independent_group(stages, 2, columns) == stages[2:4]  # skip drops rows: stop


def test_feature_patterns() -> None:
    schema = pa.schema([("id", pa.int64()), ("age", pa.float64()), ("c_a", pa.float64()),
                        ("c_b", pa.float64()), ("name", pa.string()), ("y", pa.int32())])
    assert expand_features("T", schema, ["age", "c_*"], "y") == ["age", "c_a", "c_b"]
    assert expand_features("T", schema, None, "y") == ["id", "age", "c_a", "c_b"]
    with pytest.raises(MissingColumnError, match="pattern 'd_\\*' matches no column"):
        expand_features("T", schema, ["d_*"], "y")
    for dtype in (pa.float32(), pa.int64(), pa.list_(pa.float32()), pa.string()):
        assert parse_arrow_type(arrow_type_name(dtype)) == dtype


def test_framework_predict_points_a_pipeline_directory_to_pipeline_predict(tmp_path) -> None:
    from flink_dl.inference.calls import handler_from
    from flink_dl.models.store import ModelStore
    from flink_dl.pipeline import PipelineModel
    from flink_dl.pytorch import TorchModelHandler

    PipelineModel([StandardScalerModel(["a"], [0.0], [1.0])]).save(tmp_path)
    assert (ModelStore(tmp_path).open().file("pipeline.json")).is_file()
    with pytest.raises(ConfigError, match=r"flink_dl.pipeline.predict\(input, "):
        handler_from(TorchModelHandler, tmp_path, ["a"], {})


def test_publish_model_keeps_the_stages_and_replaces_the_model(tmp_path) -> None:
    import torch

    from flink_dl.models.store import ModelStore
    from flink_dl.pipeline import PipelineModel, TorchModel, publish_model

    def scripted(directory, weight: float):
        directory.mkdir()
        layer = torch.nn.Linear(1, 1)
        torch.nn.init.constant_(layer.weight, weight)
        torch.jit.save(torch.jit.script(layer), directory / "model.ts")
        return directory

    first = scripted(tmp_path / "m1", 1.0)
    stages = [StandardScalerModel(["a"], [0.5], [2.0]), TorchModel(first / "model.ts", ["a"])]
    PipelineModel(stages).save(tmp_path / "pipes")
    version = publish_model(tmp_path / "pipes", scripted(tmp_path / "m2", 7.0))
    assert version.version == 2
    old, new = (PipelineModel.load(tmp_path / "pipes", version=v) for v in (1, 2))
    assert [s.to_json() for s in old.stages] == [s.to_json() for s in new.stages]
    loaded = torch.jit.load(ModelStore(tmp_path / "pipes").open(2).file("stage-01/model.ts"))
    assert loaded.weight.item() == 7.0
    with pytest.raises(FileNotFoundError, match=r"has no model\.ts"):
        publish_model(tmp_path / "pipes", tmp_path)


def test_pipelines_take_tables_only() -> None:
    from flink_dl.pipeline import Pipeline, PipelineModel

    with pytest.raises(ConfigError, match=r"Pipeline.fit: the input must be a pyflink Table, "
                                          r"got list; convert a DataStream"):
        Pipeline([StandardScaler(["a"])]).fit([1, 2])
    with pytest.raises(ConfigError, match=r"PipelineModel\.transform: the input must be"):
        PipelineModel([StandardScalerModel(["a"], [0.0], [1.0])]).transform("a table")
