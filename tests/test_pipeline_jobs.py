"""Pipelines as real Flink jobs: fitted statistics against numpy, save/load, build-time
checks, invalid values, and the training/serving skew test (a bounded table and a monitored
directory give bit-identical features and predictions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from examples import pipeline as example
from flink_dl.errors import FeatureTypeError, InvalidValueError, MissingColumnError
from flink_dl.flink.failures import translate_errors
from flink_dl.models.store import ModelStore
from flink_dl.pipeline import (
    Bucketizer,
    Imputer,
    MinMaxScaler,
    OneHotEncoder,
    Pipeline,
    PipelineModel,
    QuantileDiscretizer,
    SQLTransform,
    StandardScaler,
    StringIndexer,
)


@pytest.fixture(scope="module")
def t_env() -> StreamTableEnvironment:
    return StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())


def frame(rows: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=rows)
    x[[5, 17, 40]] = np.nan
    return pd.DataFrame({"x": x, "c": rng.choice(["red", "green", "blue", "tan"], rows,
                                                 p=[0.5, 0.3, 0.15, 0.05]),
                         "k": rng.integers(0, 3, rows).astype("int32"),
                         "y": rng.normal(size=rows)})


def test_fitted_statistics_match_numpy_and_transform_applies_them(t_env, tmp_path) -> None:
    data = frame()
    table = t_env.from_pandas(data)
    model = Pipeline([
        Imputer(["x"], strategy="median"),
        StringIndexer(["c"], output_cols=["c_idx"]),
        OneHotEncoder(["k"]),
        MinMaxScaler(["y"], output_cols=["y01"]),
        StandardScaler(["x", "y"]),
        QuantileDiscretizer(["x"], output_cols=["x_bucket"], num_buckets=4),
        Bucketizer(["y"], [[-math.inf, 0.0, math.inf]], output_cols=["y_sign"]),
    ]).fit(table)
    # Imputer, StringIndexer, OneHotEncoder and MinMaxScaler read columns none of them
    # writes: one job; StandardScaler reads the imputed x: a second; QuantileDiscretizer
    # reads the scaled x: a third (Bucketizer needs no fitting).
    assert model.fit_jobs == 3
    imputer, indexer, onehot, minmax, scaler, discretizer, _ = model.stages
    median = float(np.nanmedian(data["x"]))
    assert imputer.surrogates == [pytest.approx(median, rel=1e-12)]
    counts = data["c"].value_counts()
    assert indexer.vocabulary == [list(counts.index)]        # frequency, descending
    assert onehot.categories == [["0", "1", "2"]]
    x = data["x"].fillna(median)
    assert scaler.mean == pytest.approx([x.mean(), data["y"].mean()], rel=1e-12)
    assert scaler.std == pytest.approx([x.std(ddof=0), data["y"].std(ddof=0)], rel=1e-9)
    assert minmax.data_min == [data["y"].min()] and minmax.data_max == [data["y"].max()]
    # the quantiles are taken on the imputed, standardised x (the stage's input)
    z = (x - scaler.mean[0]) / scaler.std[0]
    assert discretizer.splits_array[0][1:-1] == pytest.approx(
        list(np.quantile(z, [0.25, 0.5, 0.75])), rel=1e-12)

    out = model.transform(table).to_pandas()
    assert list(out.columns) == ["x", "c", "k_0", "k_1", "k_2", "y", "c_idx", "y01",
                                 "x_bucket", "y_sign"]
    assert saved_kinds(model) == [
        "ImputerModel", "StringIndexerModel", "OneHotEncoderModel", "MinMaxScalerModel",
        "StandardScalerModel", "Bucketizer", "Bucketizer"]
    assert np.array_equal(out["x"].to_numpy(), ((x - scaler.mean[0]) / scaler.std[0]).to_numpy())
    assert out["c_idx"].tolist() == [indexer.vocabulary[0].index(c) for c in data["c"]]
    assert (out[["k_0", "k_1", "k_2"]].to_numpy().argmax(1) == data["k"]).all()
    inner = discretizer.splits_array[0][1:-1]
    assert out["x_bucket"].tolist() == np.searchsorted(inner, z, side="right").tolist()
    assert sorted(out["x_bucket"].value_counts()) == [98, 100, 100, 102]  # 3 imputed medians
    assert (out["y_sign"] == (out["y"] >= 0).astype(int)).all()
    lo, hi = data["y"].min(), data["y"].max()
    assert np.allclose(out["y01"], (data["y"] - lo) / (hi - lo), rtol=0, atol=1e-15)

    version = model.save(tmp_path / "pipes")
    saved = json.loads(Path(version.file("pipeline.json")).read_text())
    assert [s["kind"] for s in saved["stages"]] == saved_kinds(model)
    assert set(version.files) == {"pipeline.json"}           # JSON only: no pickle
    again = PipelineModel.load(tmp_path / "pipes").transform(table).to_pandas()
    pd.testing.assert_frame_equal(again, out)


def test_float_columns_fit_and_transform(t_env) -> None:
    """FLOAT (float32) features, NaN included: fitted as DOUBLE, NaN counts as missing (a
    FLOAT compared with the DOUBLE NaN literal used to fail in the planner)."""
    rng = np.random.default_rng(5)
    data = pd.DataFrame({"f": rng.normal(2.0, 3.0, 200).astype(np.float32)})
    data.loc[[3, 9], "f"] = np.nan
    table = t_env.from_pandas(data)
    model = Pipeline([Imputer(["f"]), StandardScaler(["f"])]).fit(table)
    imputer, scaler = model.stages
    f = data["f"].astype(np.float64)
    assert imputer.surrogates == [pytest.approx(f.mean(), rel=1e-9)]
    filled = f.fillna(imputer.surrogates[0])
    assert scaler.mean == [pytest.approx(filled.mean(), rel=1e-9)]
    assert scaler.std == [pytest.approx(filled.std(ddof=0), rel=1e-9)]
    out = model.transform(table).to_pandas()
    assert np.allclose(out["f"], (filled - scaler.mean[0]) / scaler.std[0], atol=1e-12)


def test_real_nan_values_count_as_missing(t_env) -> None:
    """NaN doubles that reach Flink as NaN (not as NULL, as pandas NaN does through
    ``from_pandas``): fitting leaves them out and transforms treat them as missing, for
    DOUBLE and FLOAT. (A comparison with the NaN literal is false for a NaN in Flink's
    generated code, so NaN rows used to count as values.)"""
    from pyflink.common.typeinfo import Types

    env = StreamExecutionEnvironment.get_execution_environment()
    rng = np.random.default_rng(11)
    values = rng.normal(5.0, 2.0, 60)
    values[[2, 7, 30]] = np.nan
    rows = [(i, float(v), float(v)) for i, v in enumerate(values)]
    stream = env.from_collection(rows, type_info=Types.ROW_NAMED(
        ["i", "d", "f"], [Types.INT(), Types.DOUBLE(), Types.DOUBLE()]))
    own_env = StreamTableEnvironment.create(env)
    own_env.create_temporary_view("nan_rows", own_env.from_data_stream(stream))
    table = own_env.sql_query("SELECT i, d, CAST(f AS FLOAT) AS f FROM nan_rows")
    model = Pipeline([Imputer(["d", "f"], output_cols=["d_filled", "f_filled"]),
                      Bucketizer(["d"], [[-math.inf, 5.0, math.inf]], output_cols=["d_side"],
                                 handle_invalid="keep")]).fit(table)
    imputer = model.stages[0]
    present = values[~np.isnan(values)]
    assert imputer.surrogates[0] == pytest.approx(present.mean(), rel=1e-12)
    assert imputer.surrogates[1] == pytest.approx(present.astype(np.float32).astype(
        np.float64).mean(), rel=1e-6)
    out = model.transform(table).to_pandas().sort_values("i").reset_index(drop=True)
    nan_rows = np.isnan(values)
    assert (out.loc[nan_rows, "d_filled"] == imputer.surrogates[0]).all()
    assert (out.loc[nan_rows, "f_filled"] == imputer.surrogates[1]).all()
    assert np.array_equal(out.loc[~nan_rows, "d_filled"], values[~nan_rows])
    assert (out.loc[nan_rows, "d_side"] == 2).all()           # "keep": the invalid bucket
    assert np.array_equal(out.loc[~nan_rows, "d_side"], (values[~nan_rows] >= 5.0).astype(int))


def saved_kinds(model: PipelineModel) -> list[str]:
    return [s.to_json()["kind"] for s in model.stages]


def test_build_time_checks_name_stage_column_and_types(t_env, tmp_path) -> None:
    data = frame(50)
    model = Pipeline([StandardScaler(["x"]), StringIndexer(["c"])]).fit(t_env.from_pandas(data))
    model.save(tmp_path / "p")
    loaded = PipelineModel.load(tmp_path / "p")
    other = t_env.from_pandas(data.assign(x=data["x"].astype(str)))
    with pytest.raises(FeatureTypeError, match=r"'x' \(read by StandardScalerModel\) was "
                                               r"DOUBLE .* is STRING"):
        loaded.transform(other)
    with pytest.raises(MissingColumnError, match=r"StringIndexerModel: input column\(s\) "
                                                 r"\['c'\] are not in the table"):
        loaded.transform(t_env.from_pandas(data.drop(columns=["c"])))
    with pytest.raises(FeatureTypeError, match=r"StandardScaler: column 'c' has Flink type "
                                               r"STRING"):
        Pipeline([StandardScaler(["c"])]).fit(t_env.from_pandas(data))
    with pytest.raises(Exception, match="SQLTransform: Flink cannot run"):
        SQLTransform("SELECT nope FROM __THIS__").transform(t_env.from_pandas(data))


def test_handle_invalid_error_skip_keep(t_env) -> None:
    train = pd.DataFrame({"c": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]})
    new = pd.DataFrame({"c": ["a", "zzz", None], "v": [1.0, 2.5, None]})
    fitted = {mode: Pipeline([StringIndexer(["c"], handle_invalid=mode),
                              Bucketizer(["v"], [[1.0, 2.0, 3.0]], handle_invalid=mode)]
                             ).fit(t_env.from_pandas(train)) for mode in ("skip", "keep")}
    kept = fitted["keep"].transform(t_env.from_pandas(new)).to_pandas()
    assert kept["c"].tolist() == [0, 2, 2] and kept["v"].tolist() == [0, 1, 2]
    skipped = fitted["skip"].transform(t_env.from_pandas(new)).to_pandas()
    assert skipped["c"].tolist() == [0] and skipped["v"].tolist() == [0]
    strict = Pipeline([StringIndexer(["c"])]).fit(t_env.from_pandas(train))
    with pytest.raises(InvalidValueError, match=r"StringIndexerModel: column 'c' is NULL or "
                                                r"not a fitted category: zzz"), \
            translate_errors():
        strict.transform(t_env.from_pandas(new)).to_pandas()


def test_batch_and_stream_give_bit_identical_features_and_predictions(tmp_path) -> None:
    """The training/serving skew test of issue 14."""
    model = example.fit_and_save(tmp_path, rows=3000, epochs=4)
    assert model.fit_jobs == 5      # 2 feature jobs, 1 training job, 2 reference jobs
    store = ModelStore(tmp_path / "pipelines")
    version = store.open()                      # checksums verified
    assert {"pipeline.json", "stage-05/model.ts"} <= set(version.files)
    new_rows = [example.make_rows(200, seed=20 + i, first_id=50_000 + 1000 * i)
                for i in range(3)]
    new_rows[1].loc[new_rows[1].index[:5], ["income", "region"]] = [np.nan, None]

    bounded_dir = tmp_path / "bounded"
    bounded_dir.mkdir()
    for index, rows in enumerate(new_rows):
        example.write_csv(rows, bounded_dir / f"part-{index}.csv")
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    loaded = PipelineModel.load(tmp_path / "pipelines")
    batch = loaded.transform(example.csv_table(t_env, "bounded", bounded_dir)).to_pandas()

    stream = example.score_stream(tmp_path / "pipelines", tmp_path / "incoming", new_rows)

    assert len(batch) == len(stream) == 600
    batch = batch.sort_values("id").reset_index(drop=True)
    stream = stream.sort_values("id").reset_index(drop=True)
    assert list(batch.columns) == list(stream.columns)
    features = ["log_income", "age", "visits", "region_east", "region_north", "region_south",
                "region_west", "income"]
    for name in [*features, "p_click"]:
        # collected rows come back as Python floats: float32 -> double -> float32 is exact
        b, s = batch[name].to_numpy(), stream[name].to_numpy().astype(batch[name].dtype)
        assert b.tobytes() == s.tobytes(), f"{name} differs"
    # the gaps were filled with the fitted surrogates, not left as NULL
    assert not batch[features].isna().any().any()
    assert batch.loc[batch["id"] == 51_000, "income"].item() == model.stages[0].surrogates[0]


def test_tf_estimator_stage_trains_predicts_saves_and_loads(tmp_path) -> None:
    import pyarrow as pa

    from flink_dl.pipeline import TFEstimator
    from flink_dl.tensorflow import TFConfig
    from tests.tf_entries import keras_clicks

    history = tmp_path / "history"
    history.mkdir()
    rows = example.make_rows(3000, seed=5)
    example.write_csv(rows, history / "part-0.csv")
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    table = example.csv_table(t_env, "history", history)
    stages = example.build_pipeline(str(tmp_path / "unused")).stages[:-1]
    model = Pipeline([*stages, TFEstimator(
        TFConfig(workers=2, entry=keras_clicks, epochs=4, model_dir=str(tmp_path / "tf")),
        features=example.FEATURES, label="clicked", outputs={"p_click": pa.float32()})]
    ).fit(table)
    assert model.fit_jobs == 5      # 2 feature jobs, 1 training job, 2 reference jobs
    scored = model.transform(table).to_pandas().sort_values("id")
    truth = rows.set_index("id").loc[scored["id"], "clicked"].to_numpy()
    accuracy = ((scored["p_click"] > 0.5).astype(int).to_numpy() == truth).mean()
    assert accuracy > 0.7, accuracy
    version = model.save(tmp_path / "pipes")
    assert any(name.startswith("stage-05/saved_model/") for name in version.files)
    again = PipelineModel.load(tmp_path / "pipes").transform(table).to_pandas().sort_values("id")
    assert again["p_click"].to_numpy().tobytes() == scored["p_click"].to_numpy().tobytes()
