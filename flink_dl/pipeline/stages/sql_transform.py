"""``SQLTransform``: a ``SELECT ... FROM __THIS__`` statement as a pipeline stage."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyflink.table import Table

from flink_dl.errors import ConfigError
from flink_dl.flink.pyflink_adapter import table_env_of
from flink_dl.pipeline.api import Model, register

_THIS = re.compile(r"\b__THIS__\b")


@register
class SQLTransform(Model):
    """Runs ``statement`` with ``__THIS__`` standing for the stage's input (Flink ML's
    ``SQLTransformer``). The statement is kept as text and runs in Flink SQL on bounded
    and unbounded inputs alike; it should not aggregate across rows, as a stream would
    see running results."""

    kind = "SQLTransform"

    def __init__(self, statement: str) -> None:
        if not isinstance(statement, str) or not _THIS.search(statement):
            raise ConfigError(f"SQLTransform: statement must be a SELECT ... FROM __THIS__ "
                              f"statement, got {statement!r}")
        self.statement = statement.strip().rstrip(";")

    def get_params(self) -> dict[str, Any]:
        return {"statement": self.statement}

    def model_data(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, params: Mapping[str, Any], data: Mapping[str, Any],
                  directory: Path) -> Model:
        return cls(**params)

    def transform(self, table: Table) -> Table:
        name = str(table)  # registers the Table under a generated name
        sql = _THIS.sub(lambda _: name, self.statement)
        try:
            return table_env_of(table).sql_query(sql)
        except Exception as exc:
            message = str(exc).split("\n", 2)
            detail = next((line for line in message if "Exception" in line), message[0])
            raise ConfigError(f"SQLTransform: Flink cannot run {self.statement!r} on a "
                              f"table with columns {table.get_schema().get_field_names()}: "
                              f"{detail.strip()[:500]}") from exc
