"""Pipeline stages without running a job: arguments, SQL text, JSON round trips, grouping."""

from __future__ import annotations

import json
import math
import re
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
from flink_dl.pipeline.stages.category_lookup import (
    BUCKET_BYTES,
    CHUNK_BYTES,
    bucket_of,
    encode_categories,
)


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
    # a few categories: an equality each, as typed by hand, no helper column
    assert [name for name, _ in exprs] == ["c_red", "c_dark_blue"]
    assert condition == "CASE WHEN `c` = 'red' THEN 0 WHEN `c` = 'dark blue' THEN 1 ELSE 2 END < 2"
    assert exprs[1][1] == "CASE WHEN `c` = 'dark blue' THEN 1.0E0 ELSE 0.0E0 END"
    assert onehot.index_sql(0, Column("c", "STRING", "VARCHAR")) is None
    assert column_suffix("a-b c") == "a_b_c"
    # more: a lookup in a helper column (issue 27 point 6)
    twenty = [f"k{i}" for i in range(18)] + ["b", "it's"]
    onehot = OneHotEncoderModel(["c"], [twenty], handle_invalid="skip")
    exprs, condition = onehot.column_sql(0, Column("c", "STRING", "VARCHAR"))
    assert condition == "`__flink_dl_category_index_0` < 20"
    assert exprs[1][1] == ("CASE WHEN `__flink_dl_category_index_0` = 1 THEN 1.0E0 "
                           "ELSE 0.0E0 END")
    assert "RAND()" in onehot.index_sql(0, Column("c", "STRING", "VARCHAR"))
    indexer = StringIndexerModel(["c"], [twenty], handle_invalid="keep")
    ((out, sql),), condition = indexer.column_sql(0, Column("c", "STRING", "VARCHAR"))
    assert condition is None and sql == "CAST(`__flink_dl_category_index_0` AS INT)"
    index_sql = indexer.index_sql(0, Column("c", "STRING", "VARCHAR"))
    # one bucket: no hash; the literal twice (POSITION, SUBSTRING), POSITION once
    assert index_sql.count("\x1eb\x1f19\x1eit''s\x1f'") == 2
    assert index_sql.count("POSITION(CONCAT(") == 1 and "MD5" not in index_sql
    assert index_sql.startswith("CASE WHEN `c` IS NULL OR POSITION('\x1f' IN `c`) > 0 THEN 20 ")
    many = [f"v{i}" for i in range(10_000)]
    encoded = encode_categories("T", many)
    assert (encoded.start, encoded.mark, encoded.width) == ("\x1f", "\x1e", 5)
    assert sorted(r for c in encoded.chunks for r in c[5:].split("\x1f") if r) == sorted(
        f"{i:05d}\x1e{c}" for i, c in enumerate(many))
    assert max(len(c.encode()) for c in encoded.chunks) <= CHUNK_BYTES
    other = encode_categories("T", ["a\x1fb", "c\x1e"])
    assert (other.start, other.mark) == ("\x1d", "\x1c")
    for model in (StringIndexerModel(["c"], [many], handle_invalid="skip"),
                  OneHotEncoderModel(["c"], [many])):
        column = Column("c", "STRING", "VARCHAR")
        literals = set(re.findall(r"'(?:[^']|'')*'", " ".join(model.sql_texts({"c": column}))))
        assert len(literals) < 200, len(literals)           # not one per category


def test_serving_parameters_do_not_grow_with_categories() -> None:
    """A parameter rides in every served row: a StringIndexer's categories are parameters
    (a new version may reorder them) only while they fit in one bucket of about 1 KB;
    above that they are structure (issue 27 point 6)."""
    from flink_dl.pipeline.serving import structure

    plan = [{"c": Column("c", "STRING", "VARCHAR")}]
    few = [f"v{i}" for i in range(20)]
    texts, recorder = structure([StringIndexerModel(["c"], [few])], None, plan)
    assert recorder.types == ["STRING"] and len(recorder.values[0]) <= BUCKET_BYTES
    again, _ = structure([StringIndexerModel(["c"], [few[::-1]])], None, plan)
    assert again == texts                                  # reordered: swaps in
    many = [f"v{i}" for i in range(10_000)]
    texts, recorder = structure([StringIndexerModel(["c"], [many])], None, plan)
    assert recorder.values == []                           # nothing per row
    again, _ = structure([StringIndexerModel(["c"], [many[::-1]])], None, plan)
    assert again != texts                                  # reordered: another structure


def test_buckets_of_many_categories() -> None:
    many = [f"v{i}" for i in range(10_000)]
    encoded = encode_categories("T", many)
    assert encoded.buckets == 128 and encoded.missing == 10_000
    sizes = [len(c.encode()) for c in encoded.chunks]
    assert max(sizes) < 2 * BUCKET_BYTES                   # what a row scans
    for index in (0, 1, 4321, 9999):
        chunk = encoded.chunks[bucket_of(many[index], encoded.buckets)]
        assert f"{index:05d}{encoded.mark}{many[index]}{encoded.start}" in chunk
        assert chunk.startswith("10000")                   # found nowhere: "missing"
    assert encode_categories("T", many[:50]).buckets == 1
    with pytest.raises(ConfigError, match="more than one column's lookup holds"):
        encode_categories("T", [f"{'x' * 60}{i}" for i in range(300_000)])


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


def test_a_fresh_process_loads_a_saved_model_stage_without_importing_it(tmp_path) -> None:
    """Issue 27 point 2: a process that imports only ``PipelineModel`` loads a pipeline
    with a model stage (model stages registered themselves only when ``learners`` was
    imported: ``ConfigError: unknown pipeline stage kind 'TorchModel'``)."""
    import subprocess
    import sys

    import torch

    from flink_dl.pipeline import PipelineModel, TorchModel

    (tmp_path / "m").mkdir()
    torch.jit.save(torch.jit.script(torch.nn.Linear(1, 1)), tmp_path / "m" / "model.ts")
    PipelineModel([StandardScalerModel(["a"], [0.5], [2.0]),
                   TorchModel(tmp_path / "m" / "model.ts", ["a"])]).save(tmp_path / "pipes")
    script = ("import sys; from flink_dl.pipeline import PipelineModel; "
              "m = PipelineModel.load(sys.argv[1]); "
              "print(','.join(type(s).__name__ for s in m.stages)); "
              "print('learners' in ' '.join(sys.modules))")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "pipes")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["StandardScalerModel,TorchModel", "True"]


def test_every_built_in_stage_is_found_by_kind() -> None:
    """``BUILTIN_STAGES`` names every stage flink-dl registers, under its own kind."""
    import importlib
    import pkgutil

    import flink_dl
    from flink_dl.pipeline.api import _REGISTRY, BUILTIN_STAGES

    for kind in BUILTIN_STAGES:
        assert stage_class(kind).kind == kind
    for info in pkgutil.walk_packages(flink_dl.__path__, "flink_dl."):
        if info.name.startswith(("flink_dl.pipeline", "flink_dl.online")):
            importlib.import_module(info.name)
    ours = {k for k, cls in _REGISTRY.items() if cls.__module__.startswith("flink_dl.")}
    assert ours == set(BUILTIN_STAGES)
    with pytest.raises(ConfigError, match=r"unknown pipeline stage kind 'Nope'; known: .*"
                                          r"'TorchModel'"):
        stage_class("Nope")
