"""``stream.execute_and_collect()`` in a job with an ML cluster runs the whole job: PyFlink
used to keep only the collected stream's upstream path (its Python-operator chaining
replaces the environment's transformations with that path), so a role that was not
upstream never ran and the AM waited for it, or the whole cluster was left out."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyflink.common import Types

import flink_dl
from tests.conftest import execution_mode

SCHEMA = pa.schema([("index", pa.int64()), ("square", pa.int64())])


def _mark_and_write(ctx: flink_dl.NodeContext) -> None:
    (Path(ctx.properties["out"]) / f"{ctx.role}-{ctx.index}").write_text("ran")
    if ctx.role == "rows":
        ctx.write({"index": [ctx.index], "square": [ctx.index ** 2]})


def test_collecting_one_roles_rows_runs_the_other_role_too(tmp_path: Path) -> None:
    config = flink_dl.ClusterConfig(roles={"rows": 2, "side": 1}, entry=_mark_and_write,
                                    properties={"out": str(tmp_path)},
                                    timeouts={"registration": 60})
    with execution_mode("loopback") as env:
        cluster = flink_dl.ml_cluster(env, config)
        rows = cluster.add_role("rows", output_schema=SCHEMA)
        cluster.add_role("side")
        with flink_dl.translate_errors(), rows.execute_and_collect() as collected:
            got = sorted((row["index"], row["square"]) for row in collected)
    assert got == [(0, 0), (1, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows-0", "rows-1", "side-0"]


def test_collecting_another_stream_of_the_job_runs_the_cluster(tmp_path: Path) -> None:
    config = flink_dl.ClusterConfig(roles={"side": 2}, entry=_mark_and_write,
                                    properties={"out": str(tmp_path)},
                                    timeouts={"registration": 60})
    with execution_mode("loopback") as env:
        flink_dl.add_cluster(env, config)
        doubled = env.from_collection([1, 2, 3], type_info=Types.INT()).map(
            lambda x: 2 * x, output_type=Types.INT())
        with flink_dl.translate_errors(), doubled.execute_and_collect() as collected:
            got = sorted(collected)
    assert got == [2, 4, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["side-0", "side-1"]
