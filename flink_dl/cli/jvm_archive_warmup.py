"""The warm-up jobs a JVM class archive is recorded from (``flink-dl jvm-archive``).

``flink_dl.startup.jvm_archive.build_archive`` runs ``run_warmup_jobs`` in a fresh
interpreter whose JVM dumps the classes it loaded. It lives at the top layer because it
builds an ML cluster, which the start-up layer must not import.
"""

from __future__ import annotations

import json

from flink_dl.startup.jvm_archive import JvmArchiveError


def run_warmup_jobs() -> None:
    """Small jobs that load the classes flink-dl's jobs use: SQL with a pandas UDF, Arrow
    to and from pandas, a keyed DataStream, and a one-node ML cluster."""
    import pandas as pd
    from pyflink.common import Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import DataTypes, StreamTableEnvironment
    from pyflink.table.udf import udf

    import flink_dl

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    t_env = StreamTableEnvironment.create(env)
    twice = udf(lambda x: x * 2.0, result_type=DataTypes.DOUBLE(), func_type="pandas")
    t_env.create_temporary_function("twice", twice)
    t_env.create_temporary_view("t", t_env.from_pandas(
        pd.DataFrame({"k": [1, 2, 1, 2], "x": [1.0, 2.0, 3.0, 4.0]})))
    sums = t_env.sql_query("SELECT k, SUM(twice(x)) AS s FROM t GROUP BY k").to_pandas()
    if sorted(sums["s"].tolist()) != [8.0, 12.0]:
        raise JvmArchiveError(f"warm-up SQL job gave {sums.to_dict('records')}")
    t_env.execute_sql("CREATE TEMPORARY TABLE gen (x DOUBLE) WITH ('connector'='datagen', "
                      "'number-of-rows'='1000')")
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (y DOUBLE) WITH ('connector'='blackhole')")
    t_env.execute_sql("INSERT INTO sink SELECT twice(x) FROM gen").wait()
    stream = env.from_collection([(1, "a"), (2, "b"), (1, "c")],
                                 type_info=Types.TUPLE([Types.INT(), Types.STRING()]))
    with stream.key_by(lambda r: r[0]).map(lambda r: r[1], output_type=Types.STRING()) \
            .execute_and_collect() as rows:
        if sorted(rows) != ["a", "b", "c"]:
            raise JvmArchiveError("warm-up DataStream job lost rows")
    config = flink_dl.ClusterConfig(roles={"worker": 1}, entry=_warmup_entry,
                                    name="jvm-archive-warmup")
    with flink_dl.add_cluster(env, config).execute_and_collect("jvm archive warm-up") as out:
        records = [json.loads(r) for r in out]
    if not any(r.get("kind") == "am" and r.get("state") == "FINISHED" for r in records):
        raise JvmArchiveError(f"warm-up ML cluster did not finish: {records}")


def _warmup_entry(ctx: object) -> dict[str, int]:
    return {"ok": 1}
