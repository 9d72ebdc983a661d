"""Plain PyFlink baselines of the start-up and recovery benchmarks: the six-node topology
(``bench.workloads.six_nodes``) as plain Python flat_maps, each subtask stamping the wall
clock into a file when it gets its element. Flink's own floor for "7 Python subtasks are
running" (start-up) and for "restart the region and have them running again" (recovery).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pyflink.common.typeinfo import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.functions import FlatMapFunction, RuntimeContext

import flink_dl
from bench.workloads.six_nodes import ROLES, VICTIM
from flink_dl.flink.builder import discarding_sink
from flink_dl.flink.job_env import apply_restart_policy
from flink_dl.flink.task_info import attempt_number, subtask_index


def _topology(env: StreamExecutionEnvironment,
              stamp: Callable[[str], FlatMapFunction]) -> DataStream:
    """The AM's subtask and every role's, each a ``stamp(name)`` flat_map, as one union."""
    streams = [env.from_collection([0], type_info=Types.INT())
               .flat_map(stamp("am"), output_type=Types.STRING())]
    for role, n in ROLES.items():
        streams.append(env.from_collection(list(range(n)), type_info=Types.INT())
                       .flat_map(stamp(role), output_type=Types.STRING())
                       .set_parallelism(n))
    return streams[0].union(*streams[1:])


class _StartStamp(FlatMapFunction):
    """Records when its subtask got its element, then returns."""

    def __init__(self, out: str, name: str) -> None:
        self.out, self.name = out, name

    def flat_map(self, value):
        Path(self.out, f"{self.name}-{value}").write_text(str(time.time()))
        yield self.name


def startup_baseline() -> dict[str, float]:
    """Submit -> every subtask invoked, and the first subtask's invocation -> the last."""
    env = StreamExecutionEnvironment.get_execution_environment()
    with tempfile.TemporaryDirectory() as out:
        union = _topology(env, lambda name: _StartStamp(out, name))
        submitted = time.time()
        with union.execute_and_collect("bench baseline startup") as results:
            list(results)
        stamps = [float(p.read_text()) for p in Path(out).iterdir()]
    assert len(stamps) == 1 + sum(ROLES.values())
    return {"submit_to_all_running": max(stamps) - submitted,
            "job_start_to_all_running": max(stamps) - min(stamps)}


class _RecoveryStamp(FlatMapFunction):
    """Stamps each attempt's start; on attempt 0 the victim raises after 2 s and the others
    return once it did."""

    def __init__(self, out: str, name: str) -> None:
        self.out, self.name = out, name

    def open(self, runtime_context: RuntimeContext) -> None:
        self.attempt = attempt_number(runtime_context)
        self.index = subtask_index(runtime_context)

    def flat_map(self, value):
        Path(self.out, f"{self.attempt}-{self.name}-{self.index}").write_text(str(time.time()))
        if self.attempt == 0:
            killed = Path(self.out, "killed")
            if (self.name, self.index) == VICTIM:
                time.sleep(2.0)
                killed.write_text(str(time.time()))
                raise RuntimeError("injected failure")
            # Like flink-dl's nodes told to stop by the AM: return once the failure happened
            # (Flink waits for running Python calls before it restarts the region).
            while not killed.exists():
                time.sleep(0.02)
        yield self.name


def recovery_baseline(config: flink_dl.ClusterConfig) -> float:
    """Failure -> every subtask of attempt 1 running, under ``config``'s restart policy."""
    env = StreamExecutionEnvironment.get_execution_environment()
    with tempfile.TemporaryDirectory() as out:
        apply_restart_policy(env, config)
        env.set_python_executable(sys.executable)
        _topology(env, lambda name: _RecoveryStamp(out, name)).sink_to(discarding_sink())
        env.execute("bench baseline recovery")
        killed = float(Path(out, "killed").read_text())
        starts = [float(p.read_text()) for p in Path(out).glob("1-*")]
        assert len(starts) == 1 + sum(ROLES.values())
        return max(starts) - killed
