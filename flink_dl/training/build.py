"""Building a training job: checks at build time, the entry's options, the ML cluster.

Both plugins' ``train`` (and TensorFlow's ``predict_on_cluster``) go through ``build``:
the config is validated, the input's schema is read and the declared ``features``/``label``
are checked against it (``FeatureTypeError``/``MissingColumnError`` name the column and
its Flink type before Flink starts anything), ``init_from`` is resolved to one version,
then the AM and the roles are added (only ``worker`` is fed the input).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.channel.features import check_feature_columns
from flink_dl.errors import ConfigError
from flink_dl.flink.builder import add_am_role, add_role
from flink_dl.flink.entry import serialize_entry
from flink_dl.flink.feed import arrow_schema_of, as_table
from flink_dl.models.events import EVENTS_SCHEMA
from flink_dl.training.checkpoints import resolve_init_from
from flink_dl.training.config import WORKER_ROLE, TrainingConfig
from flink_dl.training.entry import TrainingEntry
from flink_dl.training.options import TrainingOptions


def input_schema_of(env: StreamExecutionEnvironment, input: Table | DataStream | None,
                    config: TrainingConfig) -> tuple[Table | None, pa.Schema | None]:
    """The input as a Table and its Arrow schema; the declared features checked."""
    name = config.config_name
    if input is None:
        if config.epochs > 1:
            raise ConfigError(f"{name}(epochs={config.epochs}) needs an input")
        if config.features is not None or config.label is not None:
            raise ConfigError(f"{name}(features=..., label=...) needs an input to train on")
        return None, None
    table = as_table(env, input, WORKER_ROLE)
    schema = arrow_schema_of(table)  # ConfigError naming a column no channel can carry
    if not schema.names:
        raise ConfigError(f"{name}: the input has no columns")
    if config.features is not None or config.label is not None:
        check_feature_columns(schema, config.features, config.label,
                              where=f"{name}(features=..., label=...)")
    return table, schema


def build(env: StreamExecutionEnvironment, input: Table | DataStream | None,
          config: TrainingConfig,
          make_entry: Callable[[bytes, TrainingOptions], TrainingEntry], *,
          worker_schema: pa.Schema = EVENTS_SCHEMA,
          events: bool = True) -> tuple[DataStream, list[DataStream]]:
    """Add the training cluster to ``env``; returns the workers' stream (rows of
    ``worker_schema``) and the other roles' event streams.

    ``make_entry(user_entry, options)`` is the plugin's ``TrainingEntry`` class (or a
    factory of one); ``events=False``: the entry writes its own rows, no events."""
    config.validate_fields()
    table, schema = input_schema_of(env, input, config)
    init_from = None
    if config.init_from is not None:
        init_from = resolve_init_from(config.init_from, config.config_name).path
    options = config.training_options(schema, init_from=init_from, events=events)
    # Validated once, when its ML cluster is added (``ml_cluster``).
    cluster = config.cluster_config(make_entry(serialize_entry(config.entry), options))
    if config.exactly_once:
        if table is None:
            raise ConfigError(f"{config.config_name}(exactly_once=True) needs an input (the "
                              "stream whose rows must each be trained on exactly once)")
        # The fed role hosts the AM (a separate AM operator would block checkpoints).
        workers = add_role(env, cluster, WORKER_ROLE, table, output_schema=worker_schema,
                           channel_capacity=config.channel_capacity, exactly_once=True,
                           input_bundle_ms=config.input_bundle_ms)
    else:
        add_am_role(env, cluster)
        workers = add_role(env, cluster, WORKER_ROLE, table,
                           epochs=config.epochs if table is not None else 1,
                           output_schema=worker_schema,
                           channel_capacity=config.channel_capacity,
                           input_bundle_ms=config.input_bundle_ms)
    others = [add_role(env, cluster, role, None, output_schema=EVENTS_SCHEMA)
              for role in cluster.roles if role != WORKER_ROLE]
    if not config.exactly_once:
        _prewarm(env, config, cluster)
    return workers, others


def _prewarm(env: StreamExecutionEnvironment, config: TrainingConfig, cluster: Any) -> None:
    """On the embedded mini-cluster in loopback mode, start the ranks' processes and their
    framework imports now, while Flink deploys the job (``flink_dl.cluster.prewarm``)."""
    from flink_dl.cluster import prewarm
    from flink_dl.cluster.net import LOOPBACK
    from flink_dl.flink.job_env import resolve_bind_host

    nodes = [(role, index) for role, count in cluster.roles.items() for index in range(count)]
    if not config.prewarm_modules or not prewarm.enabled(len(nodes)) \
            or resolve_bind_host(env) != LOOPBACK:
        return
    prewarm.start(cluster.job_id, nodes, cluster.env, config.prewarm_modules)
