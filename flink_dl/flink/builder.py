"""``add_am_role`` / ``add_role`` / ``add_cluster``: put an ML cluster into a Flink job.

Each role is a flat_map of parallelism = node count, fed by a parallelism-1 seed source
of ``range(count)`` (the p1 -> pN rebalance gives every subtask exactly one element, which
starts its node). The AM is a parallelism-1 flat_map. ``add_cluster`` unions every node's
and the AM's outcome stream and sends it to a discarding sink, so the cluster runs even
when nothing downstream consumes it, and so AM and nodes form one pipelined region
(a failover restarts them together).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys

from pyflink.common import Configuration
from pyflink.common.typeinfo import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors import Sink
from pyflink.java_gateway import get_gateway

from flink_dl.config import ClusterConfig
from flink_dl.errors import ConfigError
from flink_dl.flink.entry import serialize_entry
from flink_dl.flink.operators import AMFunction, NodeFunction

log = logging.getLogger(__name__)

_SERIALIZED_ENTRY = "flink_dl:serialized_entry"
_JOB_ID_KEY = "$internal.pipeline.job-id"


def _operator_config(config: ClusterConfig) -> ClusterConfig:
    """The config the operators carry: the entry travels separately, as bytes."""
    return dataclasses.replace(config, entry=_SERIALIZED_ENTRY)


def _prepare(env: StreamExecutionEnvironment, config: ClusterConfig) -> None:
    if not isinstance(config, ClusterConfig):
        raise ConfigError(f"config must be a flink_dl.ClusterConfig, got {type(config).__name__}")
    if not isinstance(env, StreamExecutionEnvironment):
        raise ConfigError(
            f"env must be a pyflink StreamExecutionEnvironment, got {type(env).__name__}")
    config.validate()
    _pin_flink_job_id(env, config.job_id)
    _default_python_executable(env)


def _pin_flink_job_id(env: StreamExecutionEnvironment, job_id: str) -> None:
    """Make Flink's job id equal the cluster's job id when it is a valid Flink JobID."""
    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        return
    j_conf = env._j_stream_execution_environment.getConfiguration()
    if j_conf.toMap().containsKey(_JOB_ID_KEY):
        return
    conf = Configuration()
    conf.set_string(_JOB_ID_KEY, job_id)
    env.configure(conf)


def _default_python_executable(env: StreamExecutionEnvironment) -> None:
    """Run Flink's Python workers with this interpreter unless ``python.executable`` is set.

    Without it Flink starts ``python`` from ``PATH``, which often lacks pyflink/flink_dl.
    """
    j_conf = env._j_stream_execution_environment.getConfiguration()
    if not j_conf.toMap().containsKey("python.executable") and sys.executable:
        env.set_python_executable(sys.executable)


def add_am_role(env: StreamExecutionEnvironment, config: ClusterConfig) -> DataStream:
    """Add the cluster's AM (parallelism 1); returns its outcome stream (one JSON string)."""
    _prepare(env, config)
    seed = env.from_collection([0], type_info=Types.INT()).name(f"{config.name}-am-seed")
    return (
        seed.flat_map(AMFunction(_operator_config(config)), output_type=Types.STRING())
        .name(f"{config.name}-am")
        .uid(f"{config.name}-am")
        .set_parallelism(1)
    )


def add_role(
    env: StreamExecutionEnvironment,
    config: ClusterConfig,
    role: str,
    input: object | None = None,
) -> DataStream:
    """Add the nodes of ``role`` (parallelism = its count); returns their outcome stream."""
    _prepare(env, config)
    count = config.check_role(role)
    if input is not None:
        raise ConfigError(
            f"add_role(role={role!r}, input=...): feeding input to nodes is not supported "
            "by this version of flink-dl yet"
        )
    seed = env.from_collection(list(range(count)), type_info=Types.INT()).name(
        f"{config.name}-{role}-seed")
    function = NodeFunction(_operator_config(config), role, serialize_entry(config.entry))
    return (
        seed.flat_map(function, output_type=Types.STRING())
        .name(f"{config.name}-{role}")
        .uid(f"{config.name}-{role}")
        .set_parallelism(count)
    )


def add_cluster(env: StreamExecutionEnvironment, config: ClusterConfig) -> DataStream:
    """Add the AM and every role; returns the union of their outcome streams (JSON strings)."""
    _prepare(env, config)
    am = add_am_role(env, config)
    roles = [add_role(env, config, role) for role in config.roles]
    outcomes = am.union(*roles)
    outcomes.sink_to(discarding_sink()).name(f"{config.name}-outcomes").set_parallelism(1)
    return outcomes


def discarding_sink() -> Sink:
    """Flink's DiscardingSink (v2), wrapped for PyFlink."""
    jvm = get_gateway().jvm
    return Sink(jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())
