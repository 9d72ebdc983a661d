"""Checks of ``add_role``'s arguments against the cluster's config and the Flink
environment, made before anything is added to the job (errors are ``ConfigError``s that
name the argument)."""

from __future__ import annotations

import pyarrow as pa
from pyflink.datastream import StreamExecutionEnvironment

from flink_dl.config import ClusterConfig
from flink_dl.errors import ConfigError
from flink_dl.flink.pyflink_adapter import env_setting


def check_types(env: object, config: object) -> None:
    if not isinstance(config, ClusterConfig):
        raise ConfigError(f"config must be a flink_dl.ClusterConfig, got {type(config).__name__}")
    if not isinstance(env, StreamExecutionEnvironment):
        raise ConfigError(
            f"env must be a pyflink StreamExecutionEnvironment, got {type(env).__name__}")


def check_role_args(config: ClusterConfig, role: str, input: object, epochs: object,
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


def check_no_checkpointing(env: StreamExecutionEnvironment, role: str) -> None:
    """A fed role whose AM is the blocking AM operator cannot run under Flink checkpoints:
    the AM's task never takes a barrier, so no checkpoint completes, and at the first one
    the role's data input waits (barrier alignment) for the address input's barrier: the
    role, and every operator upstream of it (a shared ``predict``), stops for good."""
    mode = str(env_setting(env, "execution.runtime-mode") or "").strip().lower()
    if mode != "batch" and env.get_checkpoint_config().is_checkpointing_enabled():
        raise ConfigError(
            f"add_role(role={role!r}): Flink checkpointing is enabled, and the AM operator "
            "blocks its task while the ML cluster runs: no checkpoint would complete and "
            "this role's input would stop at the first checkpoint barrier (stalling the "
            "operators upstream). Use exactly_once=True (the role hosts its AM), or "
            "disable checkpointing")


def check_exactly_once(env: StreamExecutionEnvironment, config: ClusterConfig, role: str,
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
