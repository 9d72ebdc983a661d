"""Flink SQL text for the feature stages: names, literals, the input's column types.

Fitted stages become SQL expressions that Flink compiles into the JVM; the values they
fitted are written as literals that read back as exactly the same double (``repr`` is the
shortest decimal that round-trips, written as an approximate-numeric ``E`` literal).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pyflink.table import Table

from flink_dl.errors import ConfigError, FeatureTypeError, MissingColumnError
from flink_dl.flink.pyflink_adapter import resolved_schema, table_env_of

INTEGER_ROOTS = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT"})
FLOATING_ROOTS = frozenset({"FLOAT", "DOUBLE"})
NUMERIC_ROOTS = INTEGER_ROOTS | FLOATING_ROOTS | {"DECIMAL"}
STRING_ROOTS = frozenset({"CHAR", "VARCHAR"})
BOOLEAN_ROOTS = frozenset({"BOOLEAN"})

#: Families a stage may accept, with the words its error uses.
FAMILIES = {
    "numeric": (NUMERIC_ROOTS, "numeric (TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, "
                               "DECIMAL)"),
    "numeric_or_boolean": (NUMERIC_ROOTS | BOOLEAN_ROOTS, "numeric or BOOLEAN"),
    "numeric_or_string": (NUMERIC_ROOTS | STRING_ROOTS, "numeric or STRING"),
    "categorical": (STRING_ROOTS | INTEGER_ROOTS | BOOLEAN_ROOTS,
                    "STRING, an integer type or BOOLEAN"),
}


@dataclass(frozen=True)
class Column:
    """One column of a Table: its name, Flink type as SQL prints it, and type root."""

    name: str
    type: str
    root: str

    @property
    def is_floating(self) -> bool:
        return self.root in FLOATING_ROOTS


#: Type roots whose types are one family: lengths, precision and widening change no value.
_TYPE_FAMILIES = {
    **dict.fromkeys(STRING_ROOTS, "string"), **dict.fromkeys(INTEGER_ROOTS, "integer"),
    **dict.fromkeys(FLOATING_ROOTS, "floating"), "DECIMAL": "decimal",
    "BINARY": "binary", "VARBINARY": "binary",
}
_WIDTH = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 4, "BIGINT": 8, "FLOAT": 4, "DOUBLE": 8}
_COMPOUND_ROOTS = frozenset({"ARRAY", "MAP", "MULTISET", "ROW", "STRUCTURED_TYPE",
                             "DISTINCT_TYPE", "RAW"})


def same_family(fitted: Column, now: Column) -> bool:
    """Whether ``now`` holds the values of ``fitted``'s type: CHAR/VARCHAR of any length,
    integers or floating types of any width, DECIMAL of any precision, and otherwise the
    same type root (the same type for ARRAY, MAP, ROW, ...)."""
    if fitted.root in _COMPOUND_ROOTS or now.root in _COMPOUND_ROOTS:
        return fitted.type == now.type
    family = _TYPE_FAMILIES.get(fitted.root, fitted.root)
    return family == _TYPE_FAMILIES.get(now.root, now.root)


def _decimal(column: Column) -> tuple[int, int]:
    match = re.fullmatch(r"DECIMAL\((\d+), (\d+)\)", column.type)
    if not match:
        raise ConfigError(f"not a DECIMAL type: {column.type}")
    return int(match.group(1)), int(match.group(2))


def widens_to(now: Column, fitted: Column) -> bool:
    """Whether every value of ``now``'s type has the same value in ``fitted``'s (same
    family): a cast up to the fitted type then gives the stages the types they were fitted
    on. CHAR/VARCHAR are never cast (a shorter length would cut values, and the stages'
    SQL does not depend on it)."""
    if now.type == fitted.type or now.root in STRING_ROOTS:
        return False
    if now.root in _WIDTH and fitted.root in _WIDTH:
        return _WIDTH[now.root] < _WIDTH[fitted.root]
    if now.root == fitted.root == "DECIMAL":
        (p_now, s_now), (p_fit, s_fit) = _decimal(now), _decimal(fitted)
        return s_now <= s_fit and p_now - s_now <= p_fit - s_fit
    return False


def columns_of(table: Table) -> dict[str, Column]:
    """The Table's columns in order (read from the planner's resolved schema, no job)."""
    schema = resolved_schema(table)
    names = list(schema.getColumnNames())
    types = list(schema.getColumnDataTypes())
    out = {}
    for name, data_type in zip(names, types, strict=True):
        logical = data_type.getLogicalType()
        out[name] = Column(name, logical.copy(True).asSummaryString(),
                           str(logical.getTypeRoot().toString()))
    return out


def require_columns(stage: str, columns: dict[str, Column], wanted: Sequence[str],
                    family: str) -> None:
    """``MissingColumnError`` / ``FeatureTypeError`` naming the stage, column and types."""
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise MissingColumnError(f"{stage}: input column(s) {missing} are not in the table; "
                                 f"it has {list(columns)}")
    roots, words = FAMILIES[family]
    for name in wanted:
        column = columns[name]
        if column.root not in roots:
            raise FeatureTypeError(f"{stage}: column {name!r} has Flink type {column.type}; "
                                   f"this stage takes {words} columns")


def quote(name: str) -> str:
    """A Flink SQL identifier for any column name."""
    return "`" + name.replace("`", "``") + "`"


def string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def double_literal(value: float) -> str:
    """A DOUBLE literal that Flink reads back as exactly ``value``."""
    value = float(value)
    if math.isnan(value):
        return "CAST('NaN' AS DOUBLE)"
    if math.isinf(value):
        return f"CAST('{'-' if value < 0 else ''}Infinity' AS DOUBLE)"
    text = repr(value).upper()
    if "E" not in text:
        text += "E0"
    return text


def interval_literal(seconds: float) -> str:
    """A DAY TO SECOND interval literal of ``seconds`` (millisecond precision, < 100 days)."""
    millis = round(seconds * 1000)
    days, rest = divmod(millis, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return (f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}'"
            " DAY TO SECOND(3)")


def as_double(name: str) -> str:
    return f"CAST({quote(name)} AS DOUBLE)"


def is_missing(column: Column) -> str:
    """SQL true for a missing value: NULL, or NaN for FLOAT/DOUBLE columns."""
    name = quote(column.name)
    if column.is_floating:
        # FLOAT compares as DOUBLE (a FLOAT against a DOUBLE literal failed in the planner).
        value = name if column.root == "DOUBLE" else f"CAST({name} AS DOUBLE)"
        return f"({name} IS NULL OR {is_nan(value)})"
    return f"{name} IS NULL"


def is_nan(value: str) -> str:
    """SQL true where the DOUBLE ``value`` is NaN (NULL where it is NULL).

    Flink's generated code compares doubles as Java does, so NaN equals nothing, a NaN
    literal included (``x = CAST('NaN' AS DOUBLE)`` is false for a NaN ``x``; that literal
    is also parsed again for every row). ``SIGN`` keeps NaN and maps everything else,
    infinities included, to -1, 0 or 1, so ``SIGN(x) * 0`` is 0 except for NaN. The test
    uses only ``<>``, whose negation (``=``, which the planner writes when it pushes a
    ``NOT`` in) is its exact complement under Java's rules; an ordering test such as
    ``ABS(x) > max`` is not (the planner would turn ``NOT >`` into ``<=``, false for NaN).
    """
    return f"SIGN({value}) * 0.0E0 <> 0.0E0"


def present(column: Column) -> str:
    """An aggregate's ``FILTER`` clause that leaves out missing values (NULL, NaN)."""
    return f"FILTER (WHERE NOT {is_missing(column)})"


def raise_invalid(stage: str, column: str, reason: str, value_sql: str) -> str:
    """An SQL expression that fails the job with a message naming stage, column and value.

    Flink SQL has no ``RAISE``; casting a text that is not a number fails the task with the
    text in the error, which ``flink_dl.translate_errors`` turns into ``InvalidValueError``.
    """
    prefix = string_literal(f"{INVALID_MARKER}{stage}: column {column!r} {reason}: ")
    return (f"CAST(CONCAT({prefix}, COALESCE(CAST({value_sql} AS STRING), 'NULL')) "
            "AS INT)")


#: Start of the text a failing ``raise_invalid`` carries into Flink's error.
INVALID_MARKER = "flink-dl invalid value in "


def select(table: Table, projections: Sequence[str], where: str | None = None) -> Table:
    """``SELECT projections FROM table [WHERE where]`` in the table's environment."""
    sql = f"SELECT {', '.join(projections)} FROM {table}"
    if where:
        sql += f" WHERE {where}"
    return table_env_of(table).sql_query(sql)
