"""Getting rows out of a running streaming job with the public API (issue 27, point 10):
``flink_dl.files.write_files`` (what examples/online_loop.py uses) lands every row of a
Table and of a DataStream in files while the job runs, ``count_rows`` and ``read_files``
read them back, named and typed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

import flink_dl
from examples.online_loop import csv_source, write_csv
from flink_dl.errors import ConfigError
from flink_dl.files import count_rows, read_files, write_files

START = pd.Timestamp("2026-01-01 00:00:00")


def rows(first: int, count: int) -> pd.DataFrame:
    ids = np.arange(first, first + count)
    return pd.DataFrame({"id": ids, "ts": START + pd.to_timedelta(ids * 10, unit="ms"),
                         "x": ids / 4.0})


def test_rows_of_a_running_stream_land_in_files(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env)
    incoming = csv_source(t_env, "incoming", tmp_path / "incoming",
                          "id BIGINT, ts TIMESTAMP(3), x DOUBLE", monitor_files=True)
    table_dir = write_files(incoming, tmp_path / "as-csv")               # a Table
    stream = t_env.to_data_stream(incoming.select(incoming.id, incoming.x))
    json_dir = write_files(stream.map(lambda r: r, output_type=Types.ROW_NAMED(  # a stream
        ["id", "x"], [Types.LONG(), Types.DOUBLE()])), tmp_path / "as-json", format="json")
    files = [rows(1000 * i, 500) for i in range(3)]
    stop = threading.Event()

    def feed() -> None:
        for index, frame in enumerate(files):
            write_csv(frame, tmp_path / "incoming" / f"part-{index}.csv")
            if stop.wait(1.0):
                return

    client = env.execute_async("rows out")          # never ends: a monitored directory
    threading.Thread(target=feed, daemon=True).start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and \
                min(count_rows(table_dir), count_rows(json_dir)) < 1500:
            time.sleep(0.3)
    finally:
        stop.set()
        client.cancel()
        flink_dl.cleanup(env)
    assert count_rows(table_dir) == count_rows(json_dir) == 1500
    expected = pd.concat(files, ignore_index=True)
    got = read_files(table_dir).sort_values("id").reset_index(drop=True)
    assert list(got.columns) == ["id", "ts", "x"]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    got = read_files(json_dir).sort_values("id").reset_index(drop=True)
    assert list(got.columns) == ["id", "x"]
    pd.testing.assert_frame_equal(got, expected[["id", "x"]], check_dtype=False)


def test_write_files_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    t_env = StreamTableEnvironment.create(env)
    table = t_env.from_elements([(1, 2.0)], ["id", "x"])
    with pytest.raises(ConfigError, match="format must be one of"):
        write_files(table, tmp_path / "out", format="parquet")
    with pytest.raises(ConfigError, match="named rows"):
        write_files(env.from_collection([1, 2, 3]), tmp_path / "out")
    with pytest.raises(ConfigError, match="not a directory that"):
        read_files(tmp_path)
    assert count_rows(tmp_path) == 0
