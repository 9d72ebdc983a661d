"""Planning on any py4j gateway thread (issue 27, point 1).

A second job from one environment failed now and then with Calcite's
``NullPointerException: metadataHandlerProvider``: the planner's metadata provider lives in
a thread-local of the JVM thread that built the TableEnvironment, and py4j may serve a
later call on a JVM thread of a new connection. The script below makes that happen every
time: other Python threads hold every pooled connection while the main thread plans, so
the main thread's calls go over a new connection, to a new JVM thread.
"""

from __future__ import annotations

import subprocess
import sys

from flink_dl.startup.client_env import without_loopback_leftovers

SCRIPT = """
import sys, threading, time
import pandas as pd
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import DataTypes, StreamTableEnvironment
from pyflink.table.expressions import col
from pyflink.table.udf import udf

env = StreamExecutionEnvironment.get_execution_environment()
t_env = StreamTableEnvironment.create(env)
gateway = get_gateway()
def jvm_thread():
    return gateway.jvm.java.lang.Thread.currentThread().getName()

built_on = jvm_thread()
if sys.argv[1] == "flink-dl":
    import flink_dl                         # a first job, run the flink-dl way
    env.from_collection([1, 2, 3]).map(lambda x: x + 1).print()
    flink_dl.execute(env, "first job", timeout_s=120)

table = t_env.from_pandas(pd.DataFrame({"x": [1.0, 2.0, 3.0], "s": ["a", "b", "c"]}))
# Every pooled connection is held by a thread of its own (a first job leaves several in
# the pool), so the main thread's next calls open a new connection: a new JVM thread.
pooled = max(1, len(gateway._gateway_client.deque))
started = threading.Semaphore(0)
def hold_a_connection():
    started.release()
    gateway.jvm.java.lang.Thread.sleep(8000)
holders = [threading.Thread(target=hold_a_connection) for _ in range(pooled)]
for holder in holders:
    holder.start()
for _ in holders:
    started.acquire()
deadline = time.monotonic() + 5
while len(gateway._gateway_client.deque) and time.monotonic() < deadline:
    time.sleep(0.02)   # until every holder has taken its connection out of the pool
planned_on = jvm_thread()
assert planned_on != built_on, (planned_on, built_on)
plus_one = udf(lambda x: x + 1.0, result_type=DataTypes.DOUBLE())
scored = table.where(col("x") > 1.0).select(col("s"), plus_one(col("x")).alias("y"),
                                              (col("x") * 2 + 1).alias("z"))
frame = scored.to_pandas().sort_values("s")
print("ROWS", frame.to_dict("list"))
for holder in holders:
    holder.join()
"""


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=300, env=without_loopback_leftovers())


def test_plain_pyflink_fails_on_a_new_gateway_thread() -> None:
    """The reproduction is deterministic: plain PyFlink hits Calcite's NPE every time
    (FLINK-23020; when an upgrade fixes it, this test says so and the workaround can go)."""
    result = _run("plain")
    assert result.returncode != 0, result.stdout
    assert "NullPointerException: metadataHandlerProvider" in result.stderr


def test_second_job_plans_on_a_new_gateway_thread() -> None:
    """After a first job run through flink-dl, planning on a fresh gateway thread works and
    gives the right rows."""
    result = _run("flink-dl")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ROWS {'s': ['b', 'c'], 'y': [3.0, 4.0], 'z': [5.0, 7.0]}" in result.stdout
