"""Integration: Flink tables and streams fed to nodes as Arrow batches, and rows written back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.table import DataTypes, StreamTableEnvironment

import flink_dl
from flink_dl import ConfigError
from tests import entries
from tests.leftovers import wait_clean

ROWS = 1_000_000
OUTPUT_ROWS = 2_000


def _sequence_table(t_env: StreamTableEnvironment, rows: int, name: str):
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE {name} (id BIGINT, x FLOAT) WITH ('connector'='datagen', "
        f"'number-of-rows'='{rows}', 'rows-per-second'='1000000000', 'fields.id.kind'="
        f"'sequence', 'fields.id.start'='0', 'fields.id.end'='{rows - 1}')")
    return t_env.from_path(name)


def _collect(stream, name: str) -> list:
    """All rows of the job's output. execute_and_collect has no deadline: a hung job is
    failed by the suite's pytest timeout (pyproject.toml)."""
    with stream.execute_and_collect(name) as results:
        return list(results)


def test_million_rows_three_nodes_exactly_once_over_three_epochs(process_env) -> None:
    t_env = StreamTableEnvironment.create(process_env)
    table = _sequence_table(t_env, ROWS, "seq_rows")
    config = flink_dl.ClusterConfig(roles={"worker": 3}, entry=entries.checksum_epochs)
    flink_dl.add_am_role(process_env, config)
    schema = pa.schema([("index", pa.int32()), ("epoch", pa.int32()), ("rows", pa.int64()),
                        ("total", pa.int64()), ("mixed", pa.string())])
    out = flink_dl.add_role(process_env, config, "worker", table, epochs=3, output_schema=schema)
    rows = _collect(out, "exactly-once")

    assert len(rows) == 9, rows  # 3 nodes x 3 epoch marks
    ids = np.arange(ROWS, dtype=np.int64)
    for epoch in range(3):
        of_epoch = [r for r in rows if r.epoch == epoch]
        assert sorted(r.index for r in of_epoch) == [0, 1, 2]
        assert sum(r.rows for r in of_epoch) == ROWS
        assert sum(r.total for r in of_epoch) == int(ids.sum())
        assert sum(int(r.mixed) for r in of_epoch) % (1 << 64) == entries._mix64(ids)
        assert all(r.rows > 0 for r in of_epoch), "rows are split across every node"
    for index in range(3):  # every epoch replays exactly the node's first pass
        per_node = {(r.rows, r.total, r.mixed) for r in rows if r.index == index}
        assert len(per_node) == 1
    assert wait_clean(config.job_id) == {}


def test_nodes_write_rows_that_a_downstream_operator_receives(process_env) -> None:
    # Few rows on purpose: PyFlink's execute_and_collect costs ~7 ms per row.
    flink_env = process_env
    data = [Row(id=i, value=float(i) / 4) for i in range(OUTPUT_ROWS)]
    source = flink_env.from_collection(
        data, type_info=Types.ROW_NAMED(["id", "value"], [Types.LONG(), Types.DOUBLE()]))
    config = flink_dl.ClusterConfig(roles={"worker": 2}, entry=entries.double_ids)
    flink_dl.add_am_role(flink_env, config)
    out = flink_dl.add_role(flink_env, config, "worker", source,
                            output_schema=pa.schema([("id", pa.int64()), ("doubled",
                                                                           pa.float64())]))
    downstream = out.map(lambda r: (r.id, r.doubled),
                         output_type=Types.TUPLE([Types.LONG(), Types.DOUBLE()]))
    rows = _collect(downstream, "output")
    assert len(rows) == OUTPUT_ROWS
    assert sorted(rows) == [(i, i / 2) for i in range(OUTPUT_ROWS)]


def test_json_codec_carries_input_and_output(process_env) -> None:
    t_env = StreamTableEnvironment.create(process_env)
    table = t_env.from_elements(
        [(i, i / 4) for i in range(500)],
        DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT()),
                       DataTypes.FIELD("value", DataTypes.DOUBLE())]))
    config = flink_dl.ClusterConfig(roles={"worker": 2}, entry=entries.double_ids)
    flink_dl.add_am_role(process_env, config)
    out = flink_dl.add_role(process_env, config, "worker", table, codec="json",
                            output_schema=pa.schema([("id", pa.int64()),
                                                     ("doubled", pa.float64())]))
    rows = _collect(out, "json-codec")
    assert sorted((r.id, r.doubled) for r in rows) == [(i, i / 2) for i in range(500)]
    with pytest.raises(ConfigError, match="unknown codec 'nope'"):
        flink_dl.add_role(process_env, config, "worker", table, codec="nope")


def test_slow_node_backpressures_with_bounded_buffer(process_env) -> None:
    t_env = StreamTableEnvironment.create(process_env)
    t_env.get_config().set("python.fn-execution.arrow.batch.size", "1000")
    table = _sequence_table(t_env, 100_000, "seq_slow")
    config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=entries.slow_reader)
    flink_dl.add_am_role(process_env, config)
    capacity = 64 * 1024
    out = flink_dl.add_role(process_env, config, "worker", table, channel_capacity=capacity,
                            output_schema=pa.schema([("rows", pa.int64()), ("peak", pa.int64()),
                                                     ("capacity", pa.int64())]))
    (result,) = _collect(out, "backpressure")
    assert result.rows == 100_000, "a slow node still gets every row"
    assert result.capacity == capacity
    assert 0 < result.peak <= capacity
    assert result.peak > capacity // 2, "the producer ran ahead until the ring was nearly full"


def test_killed_node_process_leaves_no_shared_memory(process_env, tmp_path: Path) -> None:
    t_env = StreamTableEnvironment.create(process_env)
    t_env.get_config().set("python.fn-execution.arrow.batch.size", "1000")
    table = _sequence_table(t_env, 200_000, "seq_kill")
    config = flink_dl.ClusterConfig(roles={"worker": 2}, entry=entries.die_mid_stream,
                                    properties={"out": str(tmp_path)})
    flink_dl.add_am_role(process_env, config)
    flink_dl.add_role(process_env, config, "worker", table)
    with pytest.raises(Exception) as info:
        flink_dl.execute(process_env, "kill", timeout_s=120)
    assert "killed by signal 9" in str(info.value)
    assert list(tmp_path.glob("dying-*"))
    left = wait_clean(config.job_id)
    assert not left.get("shm") and not left.get("processes"), left


def test_null_values_fail_with_the_column_name(flink_env) -> None:
    t_env = StreamTableEnvironment.create(flink_env)
    table = t_env.from_elements(
        [(1, 1.0), (2, None), (3, 3.0)],
        DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT()),
                       DataTypes.FIELD("feature", DataTypes.DOUBLE())]))
    config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=entries.numpy_reader)
    flink_dl.add_am_role(flink_env, config)
    flink_dl.add_role(flink_env, config, "worker", table)
    with pytest.raises(Exception, match="column 'feature' has 1 null"):
        flink_dl.execute(flink_env, "nulls", timeout_s=120)


def test_unsupported_column_type_is_refused_at_build_time(flink_env) -> None:
    t_env = StreamTableEnvironment.create(flink_env)
    t_env.execute_sql("CREATE TEMPORARY TABLE with_map (id BIGINT, tags MAP<STRING, INT>) "
                      "WITH ('connector'='datagen', 'number-of-rows'='5')")
    config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=entries.numpy_reader)
    with pytest.raises(ConfigError, match="input column 'tags' has type MAP"):
        flink_dl.add_role(flink_env, config, "worker", t_env.from_path("with_map"))
    with pytest.raises(ConfigError, match="must carry named rows"):
        flink_dl.add_role(flink_env, config, "worker",
                          flink_env.from_collection([1, 2], type_info=Types.INT()))
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1"):
        flink_dl.add_role(flink_env, config, "worker", t_env.from_path("with_map"), epochs=0)
