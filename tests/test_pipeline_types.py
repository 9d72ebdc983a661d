"""Issue 27 point 5: a type change within a family (a CHAR/VARCHAR length, a wider or
narrower integer, floating or DECIMAL type) is no type drift; a change of family is."""

from __future__ import annotations

import numpy as np
import pytest
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from flink_dl.errors import FeatureTypeError
from flink_dl.pipeline import (
    MinMaxScaler,
    OneHotEncoder,
    Pipeline,
    StandardScaler,
    StringIndexer,
)
from flink_dl.pipeline.sql import Column, columns_of, same_family, widens_to

#: Rows of (c, n, m, x, d): c is VARCHAR(4) as SQL types VALUES literals.
FIT_ROWS = [("ab", 1, 7, 1.5, "1.25"), ("abcd", 2, 8, 2.5, "2.50"), ("ab", 3, 7, 4.0, "0.75"),
            ("xyz", 1, 9, 8.25, "3.00")]
NEW_ROWS = [("abcde", 3, 9, 2.0, "1.5"), ("ab", 1, 8, 8.25, "0.3"), ("xyz", 2, 7, 0.5, "2.0")]


def values(rows, types: dict[str, str]) -> str:
    """A VALUES query whose columns c, n, m, x, d are cast to ``types`` (if given)."""
    literals = ", ".join(f"('{c}', {n}, {m}, {x!r}E0, {d})" for c, n, m, x, d in rows)
    names = ["c", "n", "m", "x", "d"]
    select = ", ".join(f"CAST({n} AS {types[n]}) AS {n}" if n in types else n for n in names)
    return f"SELECT {select} FROM (VALUES {literals}) AS t({', '.join(names)})"


@pytest.fixture(scope="module")
def t_env() -> StreamTableEnvironment:
    return StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())


def test_families_and_lossless_casts() -> None:
    def c(type_: str) -> Column:
        return Column("a", type_, type_.split("(")[0].replace("INT", "INTEGER")
                      .replace("BIGINTEGER", "BIGINT").replace("STRING", "VARCHAR"))

    assert same_family(c("VARCHAR(4)"), c("VARCHAR(5)"))
    assert same_family(c("CHAR(4)"), c("STRING"))
    assert same_family(c("BIGINT"), c("INT")) and same_family(c("FLOAT"), c("DOUBLE"))
    assert same_family(c("DECIMAL(5, 2)"), c("DECIMAL(12, 4)"))
    assert not same_family(c("DOUBLE"), c("STRING"))
    assert not same_family(c("INT"), c("DOUBLE")) and not same_family(c("INT"),
                                                                        c("DECIMAL(5, 0)"))
    assert widens_to(c("INT"), c("BIGINT")) and not widens_to(c("BIGINT"), c("INT"))
    assert widens_to(c("FLOAT"), c("DOUBLE")) and not widens_to(c("DOUBLE"), c("FLOAT"))
    assert widens_to(c("DECIMAL(4, 1)"), c("DECIMAL(5, 2)"))
    assert not widens_to(c("DECIMAL(5, 3)"), c("DECIMAL(5, 2)"))   # would round
    assert not widens_to(c("DECIMAL(6, 1)"), c("DECIMAL(5, 2)"))   # could overflow
    assert not widens_to(c("VARCHAR(3)"), c("VARCHAR(4)"))         # strings are never cast


def test_other_lengths_and_widths_are_not_type_drift(t_env) -> None:
    fit_types = {"n": "BIGINT", "m": "INT", "x": "DOUBLE", "d": "DECIMAL(5, 2)"}
    fitted_on = t_env.sql_query(values(FIT_ROWS, fit_types))
    assert {n: c.type for n, c in columns_of(fitted_on).items()} == {
        "c": "VARCHAR(4)", "n": "BIGINT", "m": "INT", "x": "DOUBLE", "d": "DECIMAL(5, 2)"}
    model = Pipeline([StringIndexer(["c"], ["c_idx"], handle_invalid="keep"),
                      OneHotEncoder(["n"]), OneHotEncoder(["m"]),
                      StandardScaler(["x"], ["x_std"]), MinMaxScaler(["d"], ["d01"])]
                     ).fit(fitted_on)
    indexer, _, _, scaler, minmax = model.stages
    # c: VARCHAR(5); n: INT where BIGINT was fitted; m: BIGINT where INT was; x: FLOAT where
    # DOUBLE was; d: a narrower and a wider DECIMAL
    for new_types in ({"n": "INT", "m": "BIGINT", "x": "FLOAT", "d": "DECIMAL(3, 1)"},
                      {"n": "TINYINT", "m": "SMALLINT", "x": "DOUBLE", "d": "DECIMAL(12, 4)"}):
        table = t_env.sql_query(values(NEW_ROWS, new_types))
        assert columns_of(table)["c"].type == "VARCHAR(5)"
        out = model.transform(table).to_pandas().sort_values("x").reset_index(drop=True)
        expected = sorted(NEW_ROWS, key=lambda r: r[3])
        vocabulary = indexer.vocabulary[0]
        assert out["c_idx"].tolist() == [vocabulary.index(r[0]) if r[0] in vocabulary
                                         else len(vocabulary) for r in expected]
        assert out["c"].tolist() == [r[0] for r in expected]     # "abcde" is not cut
        assert out[["n_1", "n_2", "n_3"]].to_numpy().argmax(1).tolist() == [
            r[1] - 1 for r in expected]
        assert out[["m_7", "m_8", "m_9"]].to_numpy().argmax(1).tolist() == [
            r[2] - 7 for r in expected]
        x = np.array([r[3] for r in expected])
        assert out["x_std"].to_numpy().tobytes() == ((x - scaler.mean[0]) / scaler.std[0]
                                                     ).tobytes()
        d = np.array([float(r[4]) for r in expected])
        lo, hi = minmax.data_min[0], minmax.data_max[0]
        assert np.allclose(out["d01"], (d - lo) / (hi - lo), rtol=0, atol=1e-15)


def test_a_change_of_family_is_refused_naming_stage_column_and_types(t_env) -> None:
    fitted_on = t_env.sql_query(values(FIT_ROWS, {"x": "DOUBLE"}))
    model = Pipeline([StandardScaler(["x"])]).fit(fitted_on)
    as_text = t_env.sql_query(values(NEW_ROWS, {"x": "STRING"}))
    with pytest.raises(FeatureTypeError, match=r"column 'x' \(read by StandardScalerModel\) "
                                               r"was DOUBLE when the pipeline was fitted and "
                                               r"is STRING in this input"):
        model.transform(as_text)
    as_int = t_env.sql_query(values(NEW_ROWS, {"x": "INT"}))
    with pytest.raises(FeatureTypeError, match=r"was DOUBLE .* is INT in this input"):
        model.transform(as_int)
