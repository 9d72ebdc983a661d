"""The category lookup of ``StringIndexer`` and ``OneHotEncoder`` in Flink SQL.

A category is looked up in the fitted categories written as string literals, one per
bucket: the bucket of a category is two hex digits of its ``MD5`` (Flink's ``MD5`` and
Python's ``hashlib`` agree, in batch and stream), with as many buckets (a power of two, at
most ``MAX_BUCKETS``) as keep each near ``BUCKET_BYTES``; one bucket, and no hash, for up
to about 100 categories. A literal is the invalid index, then ``index + mark + category +
start`` for each of its categories (``'2' '0\x1ered\x1f' '1\x1egreen\x1f'`` for red
and green): one ``POSITION`` finds the key between its markers, and the digits before it
are its index (the leading invalid index where it is not found). Bucket and index are
helper columns, each computed once per row in its own projection. A row scans about 1 KB
whatever the number of categories, and the SQL and the code Flink generates grow with the
number of buckets, not of categories: a ``CASE`` with a branch per category and an ``IN``
list of them took the planner 122 s at 1,000 categories and never finished at 5,000, and
any form with one literal per category (an ``ARRAY`` or ``MAP`` literal too) fails to
compile at 10,000 (Java's 64 KB limit on the constructor that initialises the literals).
Figures: docs/pipelines.md, "Many categories".
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyflink.table import Table

from flink_dl.errors import ConfigError
from flink_dl.pipeline.sql import (
    STRING_ROOTS,
    Column,
    columns_of,
    quote,
    raise_invalid,
    select,
    string_literal,
)
from flink_dl.pipeline.stages.base import FeatureModel


def category_key(column: Column) -> str:
    """The SQL text of a column's category (its value as STRING)."""
    name = quote(column.name)
    return name if column.root in STRING_ROOTS else f"CAST({name} AS STRING)"


#: Marker characters the encoded categories may use: the first two that no category holds.
_MARKERS = [chr(c) for c in (0x1F, 0x1E, 0x1D, 0x1C, *range(1, 0x1C))] + [
    chr(0xE000 + i) for i in range(256)]
#: UTF-8 bytes of encoded categories per SQL string literal at most: Java keeps a literal as
#: one class constant of at most 65,535 bytes (modified UTF-8: at most twice the UTF-8 size).
CHUNK_BYTES = 16_000
#: Encoded bytes per bucket aimed at: what a row scans for its value.
BUCKET_BYTES = 1_024
#: Buckets at most (a power of two; two hex digits of MD5 choose one).
MAX_BUCKETS = 256
#: Categories (of ``BUCKET_BYTES`` in all at most) compared one by one instead: for a
#: handful, an equality per category in the stage's own SELECT (what a user writes by hand)
#: is faster than a lookup in a helper column.
SMALL_CATEGORIES = 16


@dataclass(frozen=True)
class EncodedCategories:
    """Categories as string literals, one per bucket (``chunks``): each starts with the
    invalid index ``len(categories)`` in ``width`` digits, then ``index + mark + category +
    start`` for each category of the bucket (``bucket_of``)."""

    start: str
    mark: str
    width: int
    missing: int
    chunks: list[str]

    @property
    def buckets(self) -> int:
        return len(self.chunks)


def bucket_of(category: str, buckets: int) -> int:
    """The bucket of ``category`` among ``buckets`` (a power of two up to 256): the first two
    hex digits of the MD5 of its UTF-8 bytes, modulo ``buckets``, as ``bucket_sql``."""
    if buckets == 1:
        return 0
    return int(hashlib.md5(category.encode()).hexdigest()[:2], 16) % buckets


def encode_categories(stage: str, categories: Sequence[str]) -> EncodedCategories:
    used = set().union(*map(set, categories))
    free = [c for c in _MARKERS if c not in used]
    if len(free) < 2:
        raise ConfigError(f"{stage}: the categories use every marker character flink-dl "
                          "can separate them with")
    start, mark = free[:2]
    missing = len(categories)
    width = len(str(missing))
    records = [f"{index:0{width}d}{mark}{category}{start}"
               for index, category in enumerate(categories)]
    total = sum(len(r.encode()) for r in records)
    buckets = 1
    while buckets < MAX_BUCKETS and total > buckets * BUCKET_BYTES:
        buckets *= 2
    parts = [[f"{missing:0{width}d}"] for _ in range(buckets)]
    for category, record in zip(categories, records, strict=True):
        parts[bucket_of(category, buckets)].append(record)
    chunks = ["".join(part) for part in parts]
    largest = max(len(c.encode()) for c in chunks)
    if largest > CHUNK_BYTES:
        raise ConfigError(f"{stage}: {len(categories):,} categories of {total:,} bytes are "
                          f"more than one column's lookup holds ({MAX_BUCKETS} literals of "
                          f"{CHUNK_BYTES:,} bytes); group rare values into one category first")
    return EncodedCategories(start, mark, width, missing, chunks)


def bucket_sql(encoded: EncodedCategories, key: str) -> str:
    """SQL: the INT bucket of the STRING ``key`` (``bucket_of``; NULL for NULL). A hex
    digit's value is ``MOD(ASCII(digit) - 48, 39)`` ('0'..'9' are 48..57, 'a'..'f'
    97..102)."""
    digest = f"MD5({key})"
    low = f"MOD(ASCII(SUBSTRING({digest} FROM 2 FOR 1)) - 48, 39)"
    if encoded.buckets <= 16:
        return f"MOD({low}, {encoded.buckets})"
    return f"MOD(MOD(ASCII({digest}) - 48, 39) * 16 + {low}, {encoded.buckets})"


def _choose(bucket: str, chunks: Sequence[str], first: int = 0) -> str:
    """SQL: ``chunks[bucket - first]``; two levels of 16 branches at most each."""
    if len(chunks) == 1:
        return chunks[0]
    if len(chunks) <= 16:
        branches = " ".join(f"WHEN {first + i} THEN {c}" for i, c in enumerate(chunks[:-1]))
        return f"CASE {bucket} {branches} ELSE {chunks[-1]} END"
    step = len(chunks) // 16
    groups = [_choose(bucket, chunks[i:i + step], first + i)
              for i in range(0, len(chunks), step)]
    branches = " ".join(f"WHEN {bucket} < {first + (i + 1) * step} THEN {g}"
                        for i, g in enumerate(groups[:-1]))
    return f"CASE {branches} ELSE {groups[-1]} END"


def lookup(encoded: EncodedCategories, chunks: Sequence[str], key: str,
           bucket: str | None) -> str:
    """SQL: the 0-based index (INT) of ``key`` among the encoded categories, whose chunks
    are the SQL texts ``chunks``, and ``encoded.missing`` where ``key`` is NULL or no
    category. ``bucket`` is a column holding ``bucket_sql`` (read twice: it must not be an
    expression the planner inlines; ``None`` for one bucket). One ``POSITION`` in about
    ``BUCKET_BYTES``: the index is the ``width`` digits before the key's record, or the
    chunk's leading ``missing`` where it is not found."""
    text = _choose(bucket or "", chunks)
    needle = f"CONCAT({string_literal(encoded.mark)}, {key}, {string_literal(encoded.start)})"
    found = (f"CAST(SUBSTRING({text} FROM GREATEST(POSITION({needle} IN {text}) - "
             f"{encoded.width}, 1) FOR {encoded.width}) AS INT)")
    # a key holding the start marker could match across two categories
    return (f"CASE WHEN {key} IS NULL OR POSITION({string_literal(encoded.start)} IN {key}) "
            f"> 0 THEN {encoded.missing} ELSE {found} END")


#: ``+ CAST(RAND() * 0 AS INT)`` makes a helper column non-deterministic, so that the
#: planner computes it once per row in its own projection instead of merging its expression
#: into every expression that reads it.
_ONCE = " + CAST(RAND() * 0 AS INT)"
_BUCKET_PREFIX = "__flink_dl_category_bucket_"


class CategoryLookupModel(FeatureModel):
    """Base of the fitted categorical stages: helper columns, computed once per row before
    the stage's SELECT: the bucket (where there are several) and the index of each input
    column's category (``missing``: ``len(categories)``)."""

    @abc.abstractmethod
    def categories_of(self, index: int) -> list[str]:
        """The fitted categories of input column ``index``."""

    def encoded(self, index: int) -> EncodedCategories:
        return encode_categories(self.stage_name, self.categories_of(index))

    def chunk_sql(self, index: int, encoded: EncodedCategories) -> list[str]:
        """The chunks' SQL texts: literals (``OneHotEncoder``: its categories are
        structure)."""
        return [string_literal(c) for c in encoded.chunks]

    def bucket_column(self, index: int) -> str:
        return f"{_BUCKET_PREFIX}{index}"

    def index_column(self, index: int) -> str:
        """The helper column with input column ``index``'s category index."""
        return f"__flink_dl_category_index_{index}"

    def is_small(self, index: int) -> bool:
        """Whether input column ``index`` has ``SMALL_CATEGORIES`` short ones at most:
        compared one by one, no helper column."""
        categories = self.categories_of(index)
        return (len(categories) <= SMALL_CATEGORIES
                and sum(len(c.encode()) for c in categories) <= BUCKET_BYTES)

    def category_sql(self, index: int) -> list[str]:
        """The categories' SQL texts where they are few: literals."""
        return [string_literal(c) for c in self.categories_of(index)]

    def found_sql(self, index: int, column: Column, invalid: str | None = None) -> str:
        """SQL: input column ``index``'s category index (INT), or ``invalid`` (default
        ``len(categories)``) where it is NULL or no category."""
        missing = str(len(self.categories_of(index)))
        if not self.is_small(index):
            found = quote(self.index_column(index))
            if invalid is None:
                return found
            return f"CASE WHEN {found} = {missing} THEN {invalid} ELSE {found} END"
        key = category_key(column)
        branches = " ".join(f"WHEN {key} = {c} THEN {i}"
                            for i, c in enumerate(self.category_sql(index)))
        return f"CASE {branches} ELSE {invalid or missing} END"

    def helper_sql(self, index: int, column: Column) -> list[tuple[str, str]]:
        """[(helper column, SQL)] in the order they are computed, one projection each
        (none for a few categories)."""
        if self.is_small(index):
            return []
        encoded = self.encoded(index)
        key = category_key(column)
        helpers = []
        bucket = None
        if encoded.buckets > 1:
            bucket = quote(self.bucket_column(index))
            helpers.append((self.bucket_column(index), bucket_sql(encoded, key) + _ONCE))
        found = lookup(encoded, self.chunk_sql(index, encoded), key, bucket)
        return [*helpers, (self.index_column(index), found + _ONCE)]

    def index_sql(self, index: int, column: Column) -> str | None:
        """SQL of ``index_column`` (reading the bucket column where there is one); ``None``
        for a few categories."""
        helpers = self.helper_sql(index, column)
        return helpers[-1][1] if helpers else None

    def prepare(self, table: Table, columns: Mapping[str, Column]) -> Table:
        # once per column: while serving, each call records the parameters again
        helpers = [h for i, name in enumerate(self.input_cols)
                   for h in self.helper_sql(i, columns[name])]
        clash = sorted({h for h, _ in helpers} & set(columns))
        if clash:
            raise ConfigError(f"{self.stage_name}: the input has column(s) {clash}, which "
                              "this stage uses itself; rename them")
        buckets = [(h, sql) for h, sql in helpers if h.startswith(_BUCKET_PREFIX)]
        indices = [(h, sql) for h, sql in helpers if not h.startswith(_BUCKET_PREFIX)]
        for chosen in (buckets, indices):  # an index reads its bucket column
            if chosen:
                table = select(table, [quote(n) for n in columns_of(table)]
                               + [f"{sql} AS {quote(h)}" for h, sql in chosen])
        return table

    def sql_texts(self, columns: Mapping[str, Column]) -> list[str]:
        return super().sql_texts(columns) + [
            f"{h}={sql}" for i, name in enumerate(self.input_cols)
            for h, sql in self.helper_sql(i, columns[name])]

    def invalid(self, column: Column) -> str:
        return raise_invalid(self.stage_name, column.name, "is NULL or not a fitted category",
                             quote(column.name))
