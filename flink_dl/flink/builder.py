"""``MLCluster`` (``ml_cluster``), ``add_am_role`` / ``add_role`` / ``add_cluster``: put an
ML cluster into a Flink job.

An ``MLCluster`` is the handle of one cluster in one environment: its AM and roles hang off
it, and ``flink.clusters`` keeps the clusters of each environment so that
``flink_dl.execute``/``cleanup`` find them. The free functions are thin wrappers over it.
Argument checks live in ``flink.role_checks``, the environment's preparation and the
operators' config in ``flink.job_env``, the operators in ``flink.operators`` and
``flink.fed_node``.

The AM is a parallelism-1 keyed process function over a one-element seed. It emits its
address as a side output, which Flink broadcasts to every role: a role without input is
a flat_map of parallelism = node count over that broadcast (each subtask gets exactly
the one address record, which starts its node); a role with input (``flink.feed``) is
its keyed input connected to the broadcast. So nodes find the AM on any Flink cluster
with no shared storage and no setting, and the AM and its roles form one pipelined region
(a failover restarts them together). Every ML operator gets a discarding sink so that
the cluster runs even when nothing downstream consumes it.

The address stream goes through a watermark assigner of its own task that turns idle
after ``ADDRESS_IDLE_MS``: the AM's watermark only reaches the end of time when the
cluster is over, and a fed role's end-of-input timer must not wait for it.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors import Sink
from pyflink.datastream.state import MapStateDescriptor
from pyflink.java_gateway import get_gateway
from pyflink.table import Table

from flink_dl.channel.codecs import get_codec
from flink_dl.channel.exactly_once import FRAME_BYTES, MARK_BYTES
from flink_dl.channel.ring import DEFAULT_CAPACITY, FRAME_HEADER
from flink_dl.cluster.node import ChannelSpec
from flink_dl.cluster.registry import hosted_am_config, validate_config
from flink_dl.config import ClusterConfig
from flink_dl.errors import ConfigError
from flink_dl.flink import collect
from flink_dl.flink.clusters import clusters_of_java_env
from flink_dl.flink.entry import serialize_entry
from flink_dl.flink.fed_node import AMHostingFedNodeFunction, FedNodeFunction
from flink_dl.flink.feed import feed, output_type_info
from flink_dl.flink.job_env import apply_restart_policy, default_python_executable, operator_config
from flink_dl.flink.job_id import pin_job_id, track_cluster
from flink_dl.flink.keys import DEFAULT_MAX_PARALLELISM
from flink_dl.flink.operators import AM_ADDRESS_TAG, AMFunction, NodeFunction
from flink_dl.flink.pyflink_adapter import j_env_config, side_output
from flink_dl.flink.role_checks import (
    check_exactly_once,
    check_no_checkpointing,
    check_role_args,
    check_types,
)
from flink_dl.startup import worker_isolation

log = logging.getLogger(__name__)

#: Milliseconds after which the AM's address stream counts as idle for watermarks.
ADDRESS_IDLE_MS = 500
#: Broadcast state of the fed roles' address input (PyFlink's broadcast connect needs
#: one; the address itself is kept by the function).
_ADDRESS_STATE = MapStateDescriptor("flink-dl-am-address", Types.STRING(), Types.STRING())


def ml_cluster(env: StreamExecutionEnvironment, config: ClusterConfig) -> MLCluster:
    """The ``MLCluster`` handle of ``config`` in ``env`` (created on first use)."""
    check_types(env, config)
    clusters = clusters_of_java_env(env, create=True)
    cluster = clusters.get(config.job_id)
    if cluster is None:
        cluster = clusters[config.job_id] = MLCluster(env, config)
    elif cluster.config is not config and cluster.config != config:
        raise ConfigError(f"job_id: this environment already has an ML cluster with job_id "
                          f"{config.job_id!r} and a different config; give each cluster its "
                          "own job_id")
    assert isinstance(cluster, MLCluster)
    return cluster


class MLCluster:
    """One ML cluster in a Flink job: the handle its AM and roles hang off.

        cluster = flink_dl.ml_cluster(env, config)
        cluster.add_am_role()
        rows = cluster.add_role("worker", table, epochs=3, output_schema=schema)
        cluster.outcomes  # the AM's and the output-less roles' JSON outcome streams

    Creating it validates ``config`` and prepares ``env``: Python executable, restart
    policy, and Flink's job id pinned to ``config.job_id`` for the next job submitted from
    ``env`` (``flink.job_id``).
    """

    def __init__(self, env: StreamExecutionEnvironment, config: ClusterConfig) -> None:
        check_types(env, config)
        validate_config(config)
        self.env = env
        self.config = config
        self.am: DataStream | None = None
        #: The AM's address records, broadcast to the roles (``add_am_role``).
        self._addresses: DataStream | None = None
        #: role -> the stream ``add_role`` returned.
        self.roles: dict[str, DataStream] = {}
        self._outcome_streams: list[DataStream] = []
        self._hosted_am = False
        pin_job_id(env, config.job_id)
        track_cluster(env, config.name, config.job_id)
        collect.install()  # execute_and_collect keeps the cluster in the job
        default_python_executable(env)
        apply_restart_policy(env, config)
        worker_isolation.apply(j_env_config(env))

    @property
    def job_id(self) -> str:
        return self.config.job_id

    @property
    def outcomes(self) -> DataStream | None:
        """The union of the JSON outcome streams added so far (the AM's, and each role's
        without ``output_schema``); ``None`` before any."""
        if not self._outcome_streams:
            return None
        first, *rest = self._outcome_streams
        return first.union(*rest) if rest else first

    def add_am_role(self) -> DataStream:
        """Add the cluster's AM (parallelism 1); returns its outcome stream (one JSON
        string). ``add_role`` adds it by itself when it is not there yet."""
        config = self.config
        if self.am is not None or self._hosted_am:
            raise ConfigError(f"add_am_role: the ML cluster {config.name!r} (job_id "
                              f"{config.job_id}) has its AM already")
        seed = self.env.from_collection([0], type_info=Types.INT()).name(
            f"{config.name}-am-seed")
        am = (
            seed.key_by(_zero_key, key_type=Types.INT())
            .process(AMFunction(self._operator_config()), output_type=Types.STRING())
            .name(f"{config.name}-am")
            .uid(f"{config.name}-am")
            .set_parallelism(1)
        )
        # The side output as Flink has it: ``get_side_output`` would add a Python identity
        # map, chained to the AM, whose output then waits for a bundle end that the AM's
        # blocked task never runs.
        self._addresses = (
            side_output(am, AM_ADDRESS_TAG)
            .assign_timestamps_and_watermarks(
                WatermarkStrategy.for_monotonous_timestamps()
                .with_idleness(Duration.of_millis(ADDRESS_IDLE_MS)))
            .name(f"{config.name}-am-address")
            .set_parallelism(1)
            # Its own task: the AM's task thread blocks while the cluster runs, and
            # idleness is detected by timers of the task that runs this operator.
            .disable_chaining()
        )
        _ensure_runs(am, f"{config.name}-am")
        self.am = am
        self._outcome_streams.append(am)
        return am

    def _operator_config(self, **changes: object) -> ClusterConfig:
        return operator_config(self.config, self.env, **changes)

    def add_role(
        self,
        role: str,
        input: Table | DataStream | None = None,
        *,
        epochs: int = 1,
        output_schema: pa.Schema | None = None,
        channel_capacity: int = DEFAULT_CAPACITY,
        codec: str = "arrow",
        exactly_once: bool = False,
        state_keep: int = 5,
        input_bundle_ms: int | None = None,
    ) -> DataStream:
        """Add the nodes of ``role`` (parallelism = its count); returns its stream: the rows
        its nodes write (``output_schema``), else one JSON outcome per node. Also
        ``flink_dl.add_role(env, config, role, input, **options)``.

        Args:
            input: a Table or a DataStream of named rows; its rows are split across the role's
                nodes as Arrow batches (``ctx.batches()``, ``ctx.numpy_batches(n)``).
            epochs: passes over a bounded input each node gets (the node caches the first).
            output_schema: the Arrow schema of rows the nodes ``ctx.write(...)``; the returned
                stream then carries those rows (named fields), else one JSON outcome per node.
            channel_capacity: bytes of each node's shared-memory ring (bounds buffering).
            codec: how batches travel through the rings: ``"arrow"`` (default), ``"json"``,
                ``"pickle"`` (explicit only) or a name given to ``register_codec``.
            exactly_once: stream training where every input row reaches the node's state
                exactly once across failures: input batches are numbered and kept in Flink
                state until the node's ``ctx.save_state`` covers them, and replayed after a
                restore (``flink_dl.channel.exactly_once``). Needs Flink checkpointing,
                ``config.checkpoint_dir``, a checkpointed source, a single-role cluster (the
                role's subtask 0 hosts the AM; do not call ``add_am_role``) and ``epochs=1``.
            state_keep: exactly-once: how many saved node states to keep on disk.
        """
        config, env = self.config, self.env
        count = config.check_role(role)
        check_role_args(config, role, input, epochs, output_schema, channel_capacity)
        get_codec(codec)  # unknown codec: ConfigError naming it, before anything starts
        if role in self.roles:
            raise ConfigError(f"add_role(role={role!r}): this role was added already")
        if not exactly_once and input is not None:
            check_no_checkpointing(env, role)
        if exactly_once:
            if self.am is not None:
                raise ConfigError(
                    f"add_role(role={role!r}, exactly_once=True): do not call add_am_role "
                    "for this cluster: the role hosts its AM (a separate AM operator blocks "
                    "Flink's checkpoints)")
            check_exactly_once(env, config, role, input, epochs, state_keep)
            self._hosted_am = True
        elif self.am is None:
            self.add_am_role()
        out_type = (output_type_info(output_schema) if output_schema is not None
                    else Types.STRING())
        schema_bytes = (output_schema.serialize().to_pybytes() if output_schema is not None
                        else None)
        channels = ChannelSpec(input=input is not None, output=output_schema is not None,
                               capacity=channel_capacity, epochs=epochs,
                               output_schema=schema_bytes, codec=codec,
                               exactly_once=exactly_once, state_keep=state_keep)
        entry_bytes = serialize_entry(config.entry)
        name = f"{config.name}-{role}"
        if exactly_once:
            # The frame adds its sequence number and mark; the message carries the mark.
            keyed = feed(env, input, role, count,
                         channel_capacity - FRAME_HEADER - FRAME_BYTES + MARK_BYTES, codec,
                         marked=True, bundle_ms=input_bundle_ms)
            stream = keyed.process(
                AMHostingFedNodeFunction(hosted_am_config(self._operator_config()), role,
                                         entry_bytes, channels, schema_bytes, host_am=True),
                output_type=out_type,
            ).set_max_parallelism(DEFAULT_MAX_PARALLELISM)
        elif input is None:
            assert self._addresses is not None
            stream = self._addresses.broadcast().flat_map(
                NodeFunction(self._operator_config(), role, entry_bytes, channels),
                output_type=out_type)
        else:
            assert self._addresses is not None
            keyed = feed(env, input, role, count, channel_capacity - FRAME_HEADER, codec,
                         bundle_ms=input_bundle_ms)
            stream = keyed.connect(self._addresses.broadcast(_ADDRESS_STATE)).process(
                FedNodeFunction(self._operator_config(), role, entry_bytes, channels,
                                schema_bytes), output_type=out_type,
            ).set_max_parallelism(DEFAULT_MAX_PARALLELISM)
        # The AM -> role edge also makes whoever consumes (or collects) this stream run
        # the AM, and puts the AM and every role into one pipelined region, so that a
        # failure anywhere restarts them together (region failover).
        stream = stream.name(name).uid(name).set_parallelism(count)
        _ensure_runs(stream, name)
        self.roles[role] = stream
        if output_schema is None:
            self._outcome_streams.append(stream)
        return stream

    def add_all(self) -> DataStream:
        """Add the AM and every role (without inputs); returns the union of their outcome
        streams (JSON strings)."""
        config = self.config
        if config.input_roles:
            raise ConfigError(
                f"add_cluster adds roles without input, but roles {sorted(config.input_roles)} "
                "need one (ClusterConfig.input_roles): use add_am_role and "
                "add_role(env, config, role, input)")
        self.add_am_role()
        for role in config.roles:
            self.add_role(role)
        outcomes = self.outcomes
        assert outcomes is not None
        return outcomes


def _zero_key(value: int) -> int:
    return 0


def add_am_role(env: StreamExecutionEnvironment, config: ClusterConfig) -> DataStream:
    """Add the cluster's AM (parallelism 1); returns its outcome stream (one JSON string).
    Same as ``ml_cluster(env, config).add_am_role()``."""
    return ml_cluster(env, config).add_am_role()


def add_role(env: StreamExecutionEnvironment, config: ClusterConfig, role: str,
             input: Table | DataStream | None = None, **options: Any) -> DataStream:
    """Add the nodes of ``role`` (parallelism = its count). Same as
    ``ml_cluster(env, config).add_role(role, input, **options)``, which declares the
    options (``epochs``, ``output_schema``, ``channel_capacity``, ``codec``,
    ``exactly_once``, ``state_keep``, ``input_bundle_ms``)."""
    return ml_cluster(env, config).add_role(role, input, **options)


def add_cluster(env: StreamExecutionEnvironment, config: ClusterConfig) -> DataStream:
    """Add the AM and every role (without inputs); returns the union of their outcome
    streams (JSON strings). For roles with input or output, use ``add_am_role`` and
    ``add_role``. Same as ``ml_cluster(env, config).add_all()``."""
    return ml_cluster(env, config).add_all()


def _ensure_runs(stream: DataStream, name: str) -> None:
    """Flink only runs operators that reach a sink: give every ML operator one."""
    stream.sink_to(discarding_sink()).name(f"{name}-discard").set_parallelism(1)


def discarding_sink() -> Sink:
    """Flink's DiscardingSink (v2), wrapped for PyFlink."""
    jvm = get_gateway().jvm
    return Sink(jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())
