"""``MLCluster`` (``ml_cluster``), ``add_am_role`` / ``add_role`` / ``add_cluster``: put an
ML cluster into a Flink job.

An ``MLCluster`` is the handle of one cluster in one environment: its AM and roles hang off
it, and the environment keeps its clusters (an attribute of the env object) so that
``flink_dl.execute``/``cleanup`` find them. The free functions are thin wrappers over it.

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

import dataclasses
import logging
import os
import sys
import threading
from typing import Any

import pyarrow as pa
from pyflink.common import Configuration, Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors import Sink
from pyflink.datastream.state import MapStateDescriptor
from pyflink.java_gateway import get_gateway
from pyflink.table import Table

from flink_dl.channel.codecs import get_codec
from flink_dl.channel.exactly_once import FRAME_BYTES, MARK_BYTES
from flink_dl.channel.ring import DEFAULT_CAPACITY, FRAME_HEADER
from flink_dl.cluster.leftovers import CLIENT_ENV, format_ref, process_ref
from flink_dl.cluster.net import LOOPBACK
from flink_dl.cluster.node import ChannelSpec
from flink_dl.cluster.registry import rules_reference
from flink_dl.config import DATAFLOW_RENDEZVOUS, ClusterConfig, RestartPolicy
from flink_dl.errors import ConfigError
from flink_dl.flink import collect, loopback_launcher, worker_isolation
from flink_dl.flink.entry import serialize_entry
from flink_dl.flink.feed import feed, output_type_info
from flink_dl.flink.job_id import pin_job_id, track_cluster
from flink_dl.flink.keys import DEFAULT_MAX_PARALLELISM
from flink_dl.flink.operators import (
    AM_ADDRESS_TAG,
    AMFunction,
    AMHostingFedNodeFunction,
    FedNodeFunction,
    NodeFunction,
)

log = logging.getLogger(__name__)

_SERIALIZED_ENTRY = "flink_dl:serialized_entry"
#: The ML clusters of each Java ``StreamExecutionEnvironment`` (job id -> ``MLCluster``), so
#: that ``execute``/``cleanup`` find them from any Python wrapper of that environment: a
#: pipeline's model stage builds its cluster on a wrapper made from the Table's environment,
#: not on the user's. Keyed by the Java object's identity hash, checked with ``equals``.
#: Entries live as long as this client process (one per environment that built a cluster).
_CLUSTERS: dict[int, list[tuple[Any, dict[str, MLCluster]]]] = {}
_CLUSTERS_LOCK = threading.Lock()
#: Milliseconds after which the AM's address stream counts as idle for watermarks.
ADDRESS_IDLE_MS = 500
#: Broadcast state of the fed roles' address input (PyFlink's broadcast connect needs
#: one; the address itself is kept by the function).
_ADDRESS_STATE = MapStateDescriptor("flink-dl-am-address", Types.STRING(), Types.STRING())


def clusters_of(env: StreamExecutionEnvironment) -> list[MLCluster]:
    """The ML clusters added to ``env`` (any Python wrapper of its Java environment) so far,
    in order."""
    return list(_clusters_of_java_env(env, create=False).values())


def _clusters_of_java_env(env: StreamExecutionEnvironment,
                          create: bool) -> dict[str, MLCluster]:
    j_env = env._j_stream_execution_environment
    key = get_gateway().jvm.System.identityHashCode(j_env)
    with _CLUSTERS_LOCK:
        for j_known, clusters in _CLUSTERS.get(key, []):
            if j_known.equals(j_env):
                return clusters
        if not create:
            return {}
        clusters = {}
        _CLUSTERS.setdefault(key, []).append((j_env, clusters))
        return clusters


def has_clusters(j_env: Any) -> bool:
    """Whether ML clusters were added to the Java ``StreamExecutionEnvironment``
    ``j_env``."""
    key = get_gateway().jvm.System.identityHashCode(j_env)
    with _CLUSTERS_LOCK:
        return any(clusters and j_known.equals(j_env)
                   for j_known, clusters in _CLUSTERS.get(key, []))


def cluster_configs_of(env: StreamExecutionEnvironment) -> list[ClusterConfig]:
    """The configs of the ML clusters added to ``env`` so far."""
    return [cluster.config for cluster in clusters_of(env)]


def ml_cluster(env: StreamExecutionEnvironment, config: ClusterConfig) -> MLCluster:
    """The ``MLCluster`` handle of ``config`` in ``env`` (created on first use)."""
    _check_types(env, config)
    clusters = _clusters_of_java_env(env, create=True)
    cluster = clusters.get(config.job_id)
    if cluster is None:
        cluster = clusters[config.job_id] = MLCluster(env, config)
    elif cluster.config is not config and cluster.config != config:
        raise ConfigError(f"job_id: this environment already has an ML cluster with job_id "
                          f"{config.job_id!r} and a different config; give each cluster its "
                          "own job_id")
    return cluster


def _check_types(env: object, config: object) -> None:
    if not isinstance(config, ClusterConfig):
        raise ConfigError(f"config must be a flink_dl.ClusterConfig, got {type(config).__name__}")
    if not isinstance(env, StreamExecutionEnvironment):
        raise ConfigError(
            f"env must be a pyflink StreamExecutionEnvironment, got {type(env).__name__}")


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
        _check_types(env, config)
        config.validate()
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
        _default_python_executable(env)
        apply_restart_policy(env, config)
        worker_isolation.apply(env._j_stream_execution_environment.getConfiguration())

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
        side_output = DataStream(am._j_data_stream.getSideOutput(
            AM_ADDRESS_TAG.get_java_output_tag()))
        self._addresses = (
            side_output
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
        return _operator_config(self.config, self.env, **changes)

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
    ) -> DataStream:
        """Add the nodes of ``role`` (parallelism = its count); see ``add_role``."""
        config, env = self.config, self.env
        count = config.check_role(role)
        _check_role_args(config, role, input, epochs, output_schema, channel_capacity)
        get_codec(codec)  # unknown codec: ConfigError naming it, before anything starts
        if role in self.roles:
            raise ConfigError(f"add_role(role={role!r}): this role was added already")
        if not exactly_once and input is not None:
            _check_no_checkpointing(env, role)
        if exactly_once:
            if self.am is not None:
                raise ConfigError(
                    f"add_role(role={role!r}, exactly_once=True): do not call add_am_role "
                    "for this cluster: the role hosts its AM (a separate AM operator blocks "
                    "Flink's checkpoints)")
            _check_exactly_once(env, config, role, input, epochs, state_keep)
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
                         marked=True)
            stream = keyed.process(
                AMHostingFedNodeFunction(_exactly_once_config(self._operator_config()), role,
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
            keyed = feed(env, input, role, count, channel_capacity - FRAME_HEADER, codec)
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


def _operator_config(config: ClusterConfig, env: StreamExecutionEnvironment,
                     **changes: object) -> ClusterConfig:
    """The config the operators carry: the entry travels separately, as bytes, the rules
    as an importable reference (a plugin's registered name means nothing in a Python
    worker that never imported the plugin), ``bind_host`` resolved for where the job
    runs (``resolve_bind_host``), and on the embedded mini-cluster this client named in
    the nodes' ``env`` (``CLIENT_ENV``: its leftovers are orphans once it is gone)."""
    node_env = dict(config.env)
    if _runs_locally(env):
        node_env[CLIENT_ENV] = format_ref(process_ref())
    return dataclasses.replace(config, entry=_SERIALIZED_ENTRY,
                               plugin=rules_reference(config.plugin),
                               bind_host=config.bind_host or resolve_bind_host(env),
                               env=node_env, **changes)


def _runs_locally(env: StreamExecutionEnvironment) -> bool:
    """Whether the job runs on the embedded mini-cluster of this client."""
    j_conf = env._j_stream_execution_environment.getConfiguration()
    return j_conf.toMap().get("execution.target") in (None, "", "local")


def resolve_bind_host(env: StreamExecutionEnvironment) -> str:
    """``127.0.0.1`` when the job runs on the embedded mini-cluster (one host, nothing
    else may dial in); the wildcard when it goes to a real cluster (``flink run``,
    application mode: ``execution.target`` is ``remote``, ``kubernetes-application``,
    ``yarn-application`` ...)."""
    if _runs_locally(env):
        return LOOPBACK
    j_conf = env._j_stream_execution_environment.getConfiguration()
    target = j_conf.toMap().get("execution.target")
    log.info("execution.target=%s: ML clusters bind every interface", target)
    return "0.0.0.0"


def _exactly_once_config(config: ClusterConfig) -> ClusterConfig:
    """Exactly-once roles host their AM in subtask 0, which no dataflow edge leads from to
    its siblings: they find it in a rendezvous store, by default the file store under the
    durable ``checkpoint_dir`` (shared by every host, as the node state there requires)."""
    if config.rendezvous != DATAFLOW_RENDEZVOUS:
        return config
    assert config.checkpoint_dir is not None
    return dataclasses.replace(
        config, rendezvous="file",
        rendezvous_dir=config.rendezvous_dir or os.path.join(config.checkpoint_dir,
                                                             "rendezvous"))


def apply_restart_policy(env: StreamExecutionEnvironment, config: ClusterConfig) -> None:
    """Configure Flink's restart strategy from ``config.restart`` (fixed delay, region or
    full failover). The AM and all roles form one pipelined region, so a failure anywhere
    restarts the whole ML cluster under a new attempt number."""
    policy = config.restart
    if policy is None:
        return
    assert isinstance(policy, RestartPolicy)
    conf = Configuration()
    if policy.attempts == 0:
        conf.set_string("restart-strategy.type", "none")
    else:
        conf.set_string("restart-strategy.type", "fixed-delay")
        conf.set_string("restart-strategy.fixed-delay.attempts", str(policy.attempts))
        conf.set_string("restart-strategy.fixed-delay.delay",
                        f"{round(policy.delay_s * 1000)} ms")
    conf.set_string("jobmanager.execution.failover-strategy", policy.failover)
    env.configure(conf)


def _default_python_executable(env: StreamExecutionEnvironment) -> None:
    """Run Flink's Python workers with this interpreter unless ``python.executable`` is set.

    Without it Flink starts ``python`` from ``PATH``, which often lacks pyflink/flink_dl.
    A local loopback job gets the light worker launcher (:mod:`flink_dl.flink.loopback_launcher`).
    """
    j_conf = env._j_stream_execution_environment.getConfiguration()
    if loopback_launcher.apply(j_conf):
        return
    if not j_conf.toMap().containsKey("python.executable") and sys.executable:
        env.set_python_executable(sys.executable)


def add_am_role(env: StreamExecutionEnvironment, config: ClusterConfig) -> DataStream:
    """Add the cluster's AM (parallelism 1); returns its outcome stream (one JSON string).
    Same as ``ml_cluster(env, config).add_am_role()``."""
    return ml_cluster(env, config).add_am_role()


def add_role(
    env: StreamExecutionEnvironment,
    config: ClusterConfig,
    role: str,
    input: Table | DataStream | None = None,
    *,
    epochs: int = 1,
    output_schema: pa.Schema | None = None,
    channel_capacity: int = DEFAULT_CAPACITY,
    codec: str = "arrow",
    exactly_once: bool = False,
    state_keep: int = 5,
) -> DataStream:
    """Add the nodes of ``role`` (parallelism = its count). Same as
    ``ml_cluster(env, config).add_role(role, input, ...)``.

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
    return ml_cluster(env, config).add_role(
        role, input, epochs=epochs, output_schema=output_schema,
        channel_capacity=channel_capacity, codec=codec, exactly_once=exactly_once,
        state_keep=state_keep)


def _check_role_args(config: ClusterConfig, role: str, input: object, epochs: object,
                     output_schema: object, channel_capacity: int) -> None:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"add_role(role={role!r}): epochs must be an integer >= 1, "
                          f"got {epochs!r}")
    if output_schema is not None and not isinstance(output_schema, pa.Schema):
        raise ConfigError(f"add_role(role={role!r}): output_schema must be a pyarrow.Schema, "
                          f"got {type(output_schema).__name__}")
    if input is None and role in config.input_roles:
        raise ConfigError(f"add_role(role={role!r}): this role needs an input "
                          "(ClusterConfig.input_roles); pass input=<Table or DataStream>")
    if epochs > 1 and input is None:
        raise ConfigError(f"add_role(role={role!r}): epochs={epochs} needs an input")
    if channel_capacity < 64 * 1024 or channel_capacity % 8:
        raise ConfigError(f"add_role(role={role!r}): channel_capacity must be a multiple of 8 "
                          f">= 65536, got {channel_capacity}")


def _check_no_checkpointing(env: StreamExecutionEnvironment, role: str) -> None:
    """A fed role whose AM is the blocking AM operator cannot run under Flink checkpoints:
    the AM's task never takes a barrier, so no checkpoint completes, and at the first one
    the role's data input waits (barrier alignment) for the address input's barrier: the
    role, and every operator upstream of it (a shared ``predict``), stops for good."""
    j_conf = env._j_stream_execution_environment.getConfiguration()
    mode = str(j_conf.toMap().get("execution.runtime-mode") or "").strip().lower()
    if mode != "batch" and env.get_checkpoint_config().is_checkpointing_enabled():
        raise ConfigError(
            f"add_role(role={role!r}): Flink checkpointing is enabled, and the AM operator "
            "blocks its task while the ML cluster runs: no checkpoint would complete and "
            "this role's input would stop at the first checkpoint barrier (stalling the "
            "operators upstream). Use exactly_once=True (the role hosts its AM), or "
            "disable checkpointing")


def _check_exactly_once(env: StreamExecutionEnvironment, config: ClusterConfig, role: str,
                        input: object, epochs: int, state_keep: int) -> None:
    where = f"add_role(role={role!r}, exactly_once=True)"
    if input is None:
        raise ConfigError(f"{where}: needs an input (the stream whose records must reach "
                          "the node exactly once)")
    if epochs != 1:
        raise ConfigError(f"{where}: epochs must be 1 (stream training), got {epochs}")
    if not config.checkpoint_dir:
        raise ConfigError(f"{where}: set ClusterConfig(checkpoint_dir=...), a durable "
                          "directory for the nodes' saved state")
    if set(config.roles) != {role}:
        raise ConfigError(f"{where}: the cluster must have this one role (its subtask 0 "
                          f"hosts the AM); roles: {list(config.roles)}")
    if not isinstance(state_keep, int) or isinstance(state_keep, bool) or state_keep < 1:
        raise ConfigError(f"{where}: state_keep must be an integer >= 1, got {state_keep!r}")
    if not env.get_checkpoint_config().is_checkpointing_enabled():
        raise ConfigError(f"{where}: enable Flink checkpointing first "
                          "(env.enable_checkpointing(interval_ms)); positions live in "
                          "Flink state")


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
