"""Issue 27 point 6: ``StringIndexer`` and ``OneHotEncoder`` over 10,000 categories plan
and run as real Flink jobs (a CASE per category and an IN list of every category took the
planner 122 s at 1,000 and never returned at 5,000), in batch and streaming mode alike,
against a pandas / scikit-learn oracle; the one-hot vectors as one ARRAY column
(``output="array"``: 10,000 columns are minutes of Flink's code generation). Timings are in
the pipeline benchmark, not here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import EnvironmentSettings, StreamTableEnvironment
from pyflink.table.expressions import col

from flink_dl.errors import InvalidValueError
from flink_dl.flink.failures import translate_errors
from flink_dl.pipeline import (
    OneHotEncoder,
    OneHotEncoderModel,
    Pipeline,
    PipelineModel,
    StringIndexer,
    StringIndexerModel,
)

N = 10_000
#: Categories of many lengths, ones a padded CHAR or a bad quote would confuse, and
#: non-ASCII ones (their bucket is the MD5 of their UTF-8 bytes, in Python and in Flink).
CATEGORIES = [f"k{i}" for i in range(N - 6)] + ["a", "a ", "", "it's", "é", "日本"]


def t_env(batch: bool = False) -> StreamTableEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    settings = EnvironmentSettings.in_batch_mode() if batch else \
        EnvironmentSettings.in_streaming_mode()
    return StreamTableEnvironment.create(env, settings)


def new_rows(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array(CATEGORIES, dtype=object), rows)
    values[::50] = "unseen"
    values[7::50] = None
    return pd.DataFrame({"id": np.arange(rows, dtype=np.int64), "c": values})


@pytest.fixture(scope="module")
def fitted() -> tuple[PipelineModel, pd.Series]:
    # category i appears 1 + i % 3 times: ties in frequency, ordered alphabetically
    fit_rows = pd.DataFrame({"c": [c for i, c in enumerate(CATEGORIES)
                                   for _ in range(1 + i % 3)]})
    model = Pipeline([StringIndexer(["c"], ["c_idx"], handle_invalid="keep"),
                      OneHotEncoder(["c"], ["c_hot"], handle_invalid="keep", output="array")]
                     ).fit(t_env().from_pandas(fit_rows))
    return model, fit_rows["c"].value_counts()


def test_ten_thousand_categories_batch_and_stream_against_an_oracle(fitted) -> None:
    from sklearn.preprocessing import OneHotEncoder as SkOneHot

    model, counts = fitted
    indexer, onehot = model.stages
    assert model.fit_jobs == 1
    vocabulary = sorted(counts.index, key=lambda c: (-counts[c], c))
    assert indexer.vocabulary == [vocabulary]
    assert onehot.categories == [sorted(CATEGORIES)]
    data = new_rows(600, seed=1)
    assert onehot.output_names(0) == ["c_hot"]
    outs = {mode: model.transform(t_env(mode == "batch").from_pandas(data)).to_pandas()
            .sort_values("id").reset_index(drop=True) for mode in ("batch", "stream")}
    batch, stream = outs["batch"], outs["stream"]
    assert batch[["id", "c", "c_idx"]].equals(stream[["id", "c", "c_idx"]])
    assert list(batch.columns) == ["id", "c", "c_idx", "c_hot"]
    batch_hot, stream_hot = np.stack(batch["c_hot"]), np.stack(stream["c_hot"])
    assert batch_hot.tobytes() == stream_hot.tobytes()          # bit-identical
    index = {c: i for i, c in enumerate(vocabulary)}
    assert batch["c"].tolist() == data["c"].tolist()
    assert batch["c_idx"].tolist() == [index.get(c, N) for c in data["c"]]
    assert (batch["c_idx"] == N).sum() == 24                # 12 unseen + 12 NULL: "keep"
    oracle = SkOneHot(categories=[onehot.categories[0]], handle_unknown="ignore",
                      sparse_output=False).fit(np.array([[CATEGORIES[0]]], dtype=object))
    expected = oracle.transform(data[["c"]].fillna("<NULL>").to_numpy())
    assert batch_hot.shape == expected.shape == (600, N)
    assert np.array_equal(batch_hot, expected)
    assert batch_hot.sum() == 600 - 24


def test_ten_thousand_categories_skip_and_error(fitted) -> None:
    model, _ = fitted
    indexer, onehot = model.stages
    data = new_rows(120, seed=2)
    valid = data["c"].isin(CATEGORIES)
    env = t_env()
    first = "c_hot"
    for stage, column in ((StringIndexerModel(["c"], indexer.vocabulary, handle_invalid="skip"),
                           "c"),
                          (OneHotEncoderModel(["c"], onehot.categories, handle_invalid="skip",
                                              output_cols=["c_hot"], output="array"), first)):
        out = stage.transform(env.from_pandas(data)).select(col("id"), col(column)).to_pandas()
        assert sorted(out["id"]) == data.loc[valid, "id"].tolist()
    for stage, column in ((StringIndexerModel(["c"], indexer.vocabulary), "c"),
                          (OneHotEncoderModel(["c"], onehot.categories, output_cols=["c_hot"],
                                              output="array"), first)):
        with pytest.raises(InvalidValueError, match=rf"{stage.stage_name}: column 'c' is "
                                                    r"NULL or not a fitted category: "
                                                    r"(unseen|NULL)"), translate_errors():
            stage.transform(env.from_pandas(data)).select(col("id"), col(column)).to_pandas()


def test_array_output_equals_the_columns() -> None:
    categories = [["a", "b b", "c"]]
    data = pd.DataFrame({"id": np.arange(6), "c": ["c", "a", None, "zz", "b b", "a"]})
    env = t_env()
    for drop_last in (False, True):
        kwargs = {"drop_last": drop_last, "handle_invalid": "keep", "output_cols": ["h"]}
        columns = OneHotEncoderModel(["c"], categories, **kwargs)
        array = OneHotEncoderModel(["c"], categories, output="array", **kwargs)
        wide = columns.transform(env.from_pandas(data)).to_pandas().sort_values("id")
        packed = array.transform(env.from_pandas(data)).to_pandas().sort_values("id")
        names = columns.output_names(0)
        assert names == ["h_a", "h_b_b", "h_c"][:3 - drop_last]
        assert np.stack(packed["h"]).tolist() == wide[names].to_numpy().tolist()
        assert wide[names].to_numpy().sum() == (4 if not drop_last else 3)


def test_few_categories_batch_and_stream_against_an_oracle() -> None:
    """A handful of categories is compared one by one in the stage's SELECT (no lookup,
    no helper column): the same indices and vectors, in batch and stream."""
    few = ["a", "a ", "", "it's", "é", "c"]
    values = ["c", "a ", None, "zz", "", "it's", "é", "a", "A", "c"]
    data = pd.DataFrame({"id": np.arange(len(values)), "c": values})
    indexer = StringIndexerModel(["c"], [few], output_cols=["i"], handle_invalid="keep")
    array = OneHotEncoderModel(["c"], [few], output_cols=["h"], handle_invalid="keep",
                               output="array")
    columns = OneHotEncoderModel(["c"], [few[:2] + few[3:4]], output_cols=["w"],
                                 handle_invalid="skip")
    assert indexer.index_sql(0, None) is None and columns.index_sql(0, None) is None
    outs = []
    for batch in (True, False):
        table = array.transform(indexer.transform(t_env(batch).from_pandas(data)))
        outs.append(table.to_pandas().sort_values("id").reset_index(drop=True))
        kept = columns.transform(t_env(batch).from_pandas(data)).to_pandas().sort_values("id")
        assert kept["id"].tolist() == [1, 5, 7]
        assert kept[["w_a", "w_a_", "w_it_s"]].to_numpy().tolist() == [
            [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    batch, stream = outs
    assert batch["i"].tolist() == stream["i"].tolist() == [
        few.index(v) if v in few else len(few) for v in values]
    expected = [[float(v == c) for c in few] for v in values]
    assert np.stack(batch["h"]).tolist() == np.stack(stream["h"]).tolist() == expected
