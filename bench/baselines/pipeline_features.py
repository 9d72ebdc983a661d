"""The pipeline benchmark's baselines: the fitted pipeline's features hand-written in one
Flink SQL ``SELECT`` (its fitted values pasted in as literals), and the same features by
scikit-learn objects in a pandas UDF."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The generated input's columns, in order.
INPUT_COLUMNS = ("id", "region", "income", "age", "visits")


def _lit(value: float) -> str:
    from flink_dl.pipeline.sql import double_literal

    return double_literal(value)


def hand_written_sql(model, source: str) -> str:
    """The pipeline's features as one SELECT a user would type, fitted values pasted in."""
    imputer, _, scaler, minmax, discretizer, onehot = model.stages
    mean_income = float(imputer.surrogates[0])
    (m_log, m_age), (s_log, s_age) = scaler.mean, scaler.std
    lo, hi = minmax.data_min[0], minmax.data_max[0]
    inner = discretizer.splits_array[0][1:-1]
    income = f"COALESCE(income, {_lit(mean_income)})"
    buckets = " ".join(f"WHEN x.income < {_lit(s)} THEN {i}" for i, s in enumerate(inner))
    hot = ", ".join(f"CASE WHEN x.region = '{c}' THEN 1.0E0 ELSE 0.0E0 END AS region_{c}"
                    for c in onehot.categories[0])
    return (f"SELECT x.id, {hot}, x.income, (CAST(x.age AS DOUBLE) - {_lit(m_age)}) / "
            f"{_lit(s_age)} AS age, (CAST(x.visits AS DOUBLE) - {_lit(lo)}) / "
            f"{_lit(hi - lo)} * 1.0E0 + 0.0E0 AS visits, "
            f"(LN(1 + x.income) - {_lit(m_log)}) / {_lit(s_log)} AS log_income, "
            f"CAST(CASE {buckets} ELSE {len(inner)} END AS INT) AS income_bucket "
            f"FROM (SELECT id, region, {income} AS income, age, visits FROM {source}) AS x")


def sklearn_transformer(fit_rows: pd.DataFrame):
    """scikit-learn objects fitted on the same rows; a function DataFrame -> features."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import (
        KBinsDiscretizer,
        MinMaxScaler,
        OneHotEncoder,
        StandardScaler,
    )

    imputer = SimpleImputer(strategy="mean").fit(fit_rows[["income"]])
    income = imputer.transform(fit_rows[["income"]])
    scaler = StandardScaler().fit(np.column_stack([np.log1p(income[:, 0]), fit_rows["age"]]))
    minmax = MinMaxScaler().fit(fit_rows[["visits"]].astype(float))
    bins = KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="quantile",
                            quantile_method="linear").fit(income)
    onehot = OneHotEncoder(sparse_output=False).fit(fit_rows[["region"]])

    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        imputed = imputer.transform(frame[["income"]])
        scaled = scaler.transform(np.column_stack([np.log1p(imputed[:, 0]), frame["age"]]))
        hot = onehot.transform(frame[["region"]])
        out = {"id": frame["id"].to_numpy()}
        out.update({f"region_{c}": hot[:, i] for i, c in enumerate(onehot.categories_[0])})
        out.update({"income": imputed[:, 0], "age": scaled[:, 1],
                    "visits": minmax.transform(frame[["visits"]].astype(float))[:, 0],
                    "log_income": scaled[:, 0],
                    "income_bucket": bins.transform(imputed)[:, 0].astype("int32")})
        return pd.DataFrame(out)

    return apply


def sklearn_table(table, apply, result_type):
    """``table.map`` through a pandas UDF that runs ``apply`` on each Arrow batch."""
    from pyflink.table.udf import udf

    def batch(frame: pd.DataFrame) -> pd.DataFrame:
        frame.columns = list(INPUT_COLUMNS)
        return apply(frame)

    return table.map(udf(batch, result_type=result_type, func_type="pandas"))
