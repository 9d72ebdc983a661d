"""Feeding a Flink Table or DataStream to the nodes of a role, as Arrow batches.

Pipeline (all batched, never row by row in Python)::

    Table --pandas UDF "pack" (vectorized)--> (node key, Arrow IPC message) per slice: every Arrow
          batch is split into one slice per node
      --> union_all(one seed row per node) --> to_data_stream --> keyBy(key column, in the
          JVM) --> node operator (KeyedProcessFunction, parallelism = node count)

Each node has one key that ``key_by`` sends to its own subtask (``flink.keys``), so every
message reaches exactly one node. The seed gives every node an element even if it gets
no data, and with it an event-time timer at the end of time: when bounded input ends,
Flink's final watermark fires the timer, which is the node's end-of-data. The data passes
a watermark assigner that ignores idleness and forwards only that final watermark, so
idle input subtasks (``table.exec.source.idle-timeout``) cannot end the input early; the
role's output stream therefore has no event-time progress before its input ends.
"""

from __future__ import annotations

import secrets

import pandas as pd
import pyarrow as pa
from pyflink.common import WatermarkStrategy
from pyflink.common.typeinfo import RowTypeInfo, TypeInformation, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.data_stream import KeyedStream
from pyflink.table import DataTypes, StreamTableEnvironment, Table
from pyflink.table import types as ft
from pyflink.table.expressions import col, row
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from flink_dl.channel.codecs import get_codec
from flink_dl.channel.exactly_once import MARK_BYTES, encode_marked
from flink_dl.errors import ConfigError
from flink_dl.flink.bundles import python_bundles_of
from flink_dl.flink.keys import DEFAULT_MAX_PARALLELISM, keys_for_subtasks
from flink_dl.flink.planner_threads import install as plan_on_any_thread
from flink_dl.flink.pyflink_adapter import key_by_first_field, set_output_type, table_env_of
from flink_dl.startup import client_logging, worker_tuning

PACKED_FIELD = "flink_dl_packed"


def arrow_type_of(name: str, dtype: ft.DataType) -> pa.DataType:
    """The Arrow type a Flink column travels as; ``ConfigError`` naming the column if none."""
    simple: list[tuple[type, pa.DataType]] = [
        (ft.TinyIntType, pa.int8()), (ft.SmallIntType, pa.int16()), (ft.IntType, pa.int32()),
        (ft.BigIntType, pa.int64()), (ft.FloatType, pa.float32()), (ft.DoubleType, pa.float64()),
        (ft.BooleanType, pa.bool_()), (ft.VarCharType, pa.string()), (ft.CharType, pa.string()),
        (ft.VarBinaryType, pa.binary()), (ft.BinaryType, pa.binary()),
        (ft.DateType, pa.date32()),
    ]
    for flink_type, arrow_type in simple:
        if isinstance(dtype, flink_type):
            return arrow_type
    if isinstance(dtype, ft.DecimalType):
        return pa.decimal128(dtype.precision, dtype.scale)
    if isinstance(dtype, ft.TimestampType | ft.LocalZonedTimestampType):
        return pa.timestamp("us")
    if isinstance(dtype, ft.ArrayType):
        element = arrow_type_of(f"{name}[]", dtype.element_type)
        if not (pa.types.is_integer(element) or pa.types.is_floating(element)
                or pa.types.is_boolean(element)):
            raise ConfigError(f"input column {name!r}: ARRAY<{dtype.element_type}> cannot be "
                              "fed to nodes; arrays of numbers and booleans can")
        return pa.list_(element)
    raise ConfigError(f"input column {name!r} has type {dtype}, which the Arrow channel "
                      "cannot carry; cast it (e.g. to STRING or BYTES) in Flink first")


def arrow_schema_of(table: Table) -> pa.Schema:
    schema = table.get_resolved_schema()
    fields = []
    for name, dtype in zip(schema.get_column_names(), schema.get_column_data_types(),
                           strict=True):
        fields.append(pa.field(name, arrow_type_of(name, dtype),
                               nullable=bool(getattr(dtype, "_nullable", True))))
    return pa.schema(fields)


def flink_type_of(name: str, arrow_type: pa.DataType) -> TypeInformation:
    """Flink type information for an output column of ``arrow_type``."""
    table = [
        (pa.types.is_int8, Types.BYTE()), (pa.types.is_int16, Types.SHORT()),
        (pa.types.is_int32, Types.INT()), (pa.types.is_int64, Types.LONG()),
        (pa.types.is_float32, Types.FLOAT()), (pa.types.is_float64, Types.DOUBLE()),
        (pa.types.is_boolean, Types.BOOLEAN()), (pa.types.is_string, Types.STRING()),
        (pa.types.is_large_string, Types.STRING()),
        (pa.types.is_binary, Types.PRIMITIVE_ARRAY(Types.BYTE())),
    ]
    for check, type_info in table:
        if check(arrow_type):
            return type_info
    if pa.types.is_list(arrow_type):
        return Types.LIST(flink_type_of(f"{name}[]", arrow_type.value_type))
    raise ConfigError(f"output column {name!r}: Arrow type {arrow_type} has no Flink "
                      "equivalent here; use ints, floats, bools, strings, binary or lists")


def output_type_info(schema: pa.Schema) -> RowTypeInfo:
    return Types.ROW_NAMED(schema.names, [flink_type_of(f.name, f.type) for f in schema])


class PackBatches(ScalarFunction):
    """Pandas UDF: packs each Arrow batch it receives into one message per node."""

    def __init__(self, schema_bytes: bytes, node_keys: list[int], max_message_bytes: int,
                 codec: str, marked: bool = False) -> None:
        self.schema_bytes = schema_bytes
        self.node_keys = node_keys
        self.max_message_bytes = max_message_bytes
        self.codec_name = codec
        self.marked = marked
        self.next_node = 0

    def open(self, function_context: FunctionContext) -> None:
        worker_tuning.apply()
        self.schema = pa.ipc.read_schema(pa.py_buffer(self.schema_bytes))
        self.codec = get_codec(self.codec_name)
        self.next_node = function_context.get_index_of_this_subtask() % len(self.node_keys)
        # Exactly-once: messages carry (nonce of this instance, counter); see
        # flink_dl.channel.exactly_once for why the node operators need them.
        self.nonce = secrets.randbits(63) | 1
        self.counter = 0

    def eval(self, *columns: pd.Series) -> pd.DataFrame:
        arrays = [pa.Array.from_pandas(c, type=f.type) for c, f in zip(columns, self.schema,
                                                                        strict=True)]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        keys = pd.Series([None] * batch.num_rows, dtype=object)
        payloads = pd.Series([None] * batch.num_rows, dtype=object)
        for i, payload in enumerate(self._encode_split(batch)):
            keys.iloc[i] = self.node_keys[self.next_node]
            if self.marked:
                self.counter += 1
                payload = encode_marked((self.nonce, self.counter), payload)
            payloads.iloc[i] = payload
            self.next_node = (self.next_node + 1) % len(self.node_keys)
        return pd.DataFrame({"k": keys, "p": payloads})

    def _encode_split(self, batch: pa.RecordBatch) -> list[bytes]:
        """Slice the batch into one near-equal part per node (each node gets ~1/N of every
        batch, so shares stay balanced however Flink sizes its batches)."""
        parts = min(len(self.node_keys), batch.num_rows)
        if parts <= 1:
            return self._encode(batch)
        step, extra = divmod(batch.num_rows, parts)
        messages, offset = [], 0
        for i in range(parts):
            size = step + (1 if i < extra else 0)
            messages.extend(self._encode(batch.slice(offset, size)))
            offset += size
        return messages

    def _encode(self, batch: pa.RecordBatch) -> list[bytes]:
        payload = self.codec.encode(batch)
        data = payload.to_pybytes() if isinstance(payload, pa.Buffer) else bytes(payload)
        if len(data) <= self.max_message_bytes:
            return [data]
        if batch.num_rows == 1:
            sizes = {name: batch.column(name).nbytes for name in batch.schema.names}
            widest = max(sizes, key=lambda n: sizes[n])
            raise ConfigError(
                f"one input row encodes to {len(data)} bytes, more than the channel's "
                f"{self.max_message_bytes} (column {widest!r} holds {sizes[widest]} bytes); "
                "raise channel_capacity in add_role")
        half = batch.num_rows // 2
        return self._encode(batch.slice(0, half)) + self._encode(batch.slice(half))


def as_table(env: StreamExecutionEnvironment, input: Table | DataStream,
             role: str) -> Table:
    if isinstance(input, Table):
        return input
    if isinstance(input, DataStream):
        type_info = input.get_type()
        if not isinstance(type_info, RowTypeInfo):
            raise ConfigError(
                f"add_role(role={role!r}): a DataStream input must carry named rows "
                f"(Types.ROW_NAMED); got {type_info}. Map it to rows first.")
        t_env = StreamTableEnvironment.create(env)
        return t_env.from_data_stream(input)
    raise ConfigError(f"add_role(role={role!r}): input must be a pyflink Table or DataStream, "
                      f"got {type(input).__name__}")


def feed(env: StreamExecutionEnvironment, input: Table | DataStream,
         role: str, nodes: int, max_message_bytes: int, codec: str = "arrow",
         marked: bool = False, bundle_ms: int | None = None) -> KeyedStream:
    """Build the packing pipeline for ``role``'s ``nodes`` (see the module docstring); returns
    the stream keyed so that node *i*'s messages reach subtask *i*. ``marked``: every
    message starts with its packing instance's mark (exactly-once input). ``bundle_ms``:
    in a streaming job, the packing UDF's Python bundle ends within that long (a row waits
    no longer to leave for its node); ``None``: the job's bundle time."""
    table = as_table(env, input, role)
    schema = arrow_schema_of(table)
    if not schema.names:
        raise ConfigError(f"add_role(role={role!r}): the input has no columns")
    t_env = table_env_of(table)
    plan_on_any_thread()
    client_logging.install()
    _default_arrow_batch(t_env)
    keys = keys_for_subtasks(nodes, DEFAULT_MAX_PARALLELISM)
    if marked:
        max_message_bytes -= MARK_BYTES
    pack = udf(PackBatches(schema.serialize().to_pybytes(), keys, max_message_bytes, codec,
                           marked),
               result_type=DataTypes.ROW([DataTypes.FIELD("k", DataTypes.INT()),
                                          DataTypes.FIELD("p", DataTypes.BYTES())]),
               func_type="pandas")
    packed = (
        table.select(pack(*[col(n) for n in schema.names]).alias("r"))
        .select(col("r").get("k").alias("k"), row(col("r").get("p")).alias("v"))
        .where(col("k").is_not_null)
    )
    seeds = t_env.from_elements(
        [(k, (bytearray(),)) for k in keys],
        DataTypes.ROW([DataTypes.FIELD("k", DataTypes.INT()),
                       DataTypes.FIELD("v", DataTypes.ROW(
                           [DataTypes.FIELD(PACKED_FIELD, DataTypes.BYTES())]))]))
    # End of input: the node's end-of-time timer must fire only when every input subtask
    # has ended (a bounded source finished, or a stop with drain), never because input
    # subtasks went idle (``table.exec.source.idle-timeout``) while the seeds' finished
    # source sat at the final watermark. The data passes a watermark assigner that ignores
    # upstream idleness and watermarks and forwards only the final one; the seeds join
    # behind it.
    if bundle_ms is None:
        converted = t_env.to_data_stream(packed)
    else:
        with python_bundles_of(t_env, bundle_ms):
            converted = t_env.to_data_stream(packed)
    data = _retyped(converted).assign_timestamps_and_watermarks(
        WatermarkStrategy.no_watermarks())
    stream = data.union(_retyped(t_env.to_data_stream(seeds)))
    return _key_by_first_field(stream)


#: Rows per Arrow batch handed to the packing UDF unless the job sets its own (Flink's
#: default of 1,000 costs ~25 % of ingest throughput in per-batch overhead).
FEED_ARROW_BATCH_ROWS = 10_000


def _default_arrow_batch(t_env: StreamTableEnvironment) -> None:
    config = t_env.get_config()
    if config.get("python.fn-execution.arrow.batch.size", "") == "":
        config.set("python.fn-execution.arrow.batch.size", str(FEED_ARROW_BATCH_ROWS))
        bundle = config.get("python.fn-execution.bundle.size", "")
        if bundle == "" or int(bundle) < FEED_ARROW_BATCH_ROWS:
            config.set("python.fn-execution.bundle.size", str(10 * FEED_ARROW_BATCH_ROWS))


_VALUE_TYPE = Types.ROW_NAMED([PACKED_FIELD], [Types.PRIMITIVE_ARRAY(Types.BYTE())])
_KEYED_TYPE = Types.ROW([Types.INT(), _VALUE_TYPE])


def _retyped(stream: DataStream) -> DataStream:
    """A table conversion's external type info -> the plain Row type the keyed Python
    operator accepts (TableToDataStream emits Row objects either way)."""
    return set_output_type(stream, _KEYED_TYPE)


def _key_by_first_field(stream: DataStream) -> KeyedStream:
    """Key ``Row(key INT, value Row(payload))`` records by their first field in the JVM.

    PyFlink's ``key_by`` runs a Python key selector that sends every record through Python
    and back just to read its key; here the key is already a column, so key by it the way
    ``key_by`` does internally (``KeyByKeySelector`` on field 0), with no Python hop.
    """
    return key_by_first_field(stream, Types.ROW([Types.INT()]), _VALUE_TYPE)
