"""A fed role's input ends when its sources end, not when they go idle: with
``table.exec.source.idle-timeout`` set, an idle source subtask and the finished seed
source used to move the role's watermark to the end of time, which ended a streaming
training input early. Bounded inputs still end."""

from __future__ import annotations

import time
from pathlib import Path

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment, Table

import flink_dl
from tests.conftest import execution_mode


def _count_until(ctx: flink_dl.NodeContext) -> None:
    out, want = Path(ctx.properties["out"]), int(ctx.properties["want"])
    seen = 0
    for batch in ctx.batches():
        seen += batch.num_rows
        if seen >= want:
            break
    (out / f"result-{ctx.index}").write_text(str(seen))


def _csv(path: Path, ids: range) -> None:
    hidden = path.with_name("." + path.name)
    hidden.write_text("".join(f"{i},2026-01-01 00:00:{i % 60:02d}.000\n" for i in ids))
    hidden.rename(path)


def _source(t_env: StreamTableEnvironment, data: Path, monitor: bool) -> Table:
    options = f"'connector' = 'filesystem', 'path' = '{data}', 'format' = 'csv'"
    if monitor:
        options += ", 'source.monitor-interval' = '200 ms'"
    # event time with a watermark: the idle timeout applies to the source's watermarks
    t_env.execute_sql("CREATE TEMPORARY TABLE ids (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR "
                      f"ts AS ts - INTERVAL '1' SECOND) WITH ({options})")
    return t_env.from_path("ids")


def _counting_role(env: StreamExecutionEnvironment, data: Path, out: Path, *, nodes: int,
                   want: int, monitor: bool) -> None:
    """A role of ``nodes`` nodes counting their rows, fed by two source subtasks with
    Flink's idle timeout on."""
    env.set_parallelism(2)
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("table.exec.source.idle-timeout", "100 ms")
    config = flink_dl.ClusterConfig(roles={"worker": nodes}, entry=_count_until,
                                    input_roles={"worker"},
                                    properties={"out": str(out), "want": str(want)})
    flink_dl.add_role(env, config, "worker", _source(t_env, data, monitor=monitor))


def test_idle_source_subtask_does_not_end_a_streaming_input(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    _csv(data / "part-0.csv", range(10))            # one file, two source subtasks
    with execution_mode("loopback") as env:
        _counting_role(env, data, out, nodes=1, want=30, monitor=True)
        client = env.execute_async("idle input")
        try:
            time.sleep(8)                           # far past the idle timeout
            _csv(data / "part-1.csv", range(10, 30))  # rows that arrive later
            deadline = time.monotonic() + 120
            while not (out / "result-0").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            client.cancel()
            flink_dl.cleanup(env)
    assert (out / "result-0").read_text() == "30"


def test_bounded_input_with_idle_timeout_still_ends(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    _csv(data / "part-0.csv", range(25))
    with execution_mode("loopback") as env:
        _counting_role(env, data, out, nodes=2, want=1000, monitor=False)
        flink_dl.execute(env, "bounded idle", timeout_s=180)
    counts = [int((out / f"result-{i}").read_text()) for i in range(2)]
    assert sum(counts) == 25
