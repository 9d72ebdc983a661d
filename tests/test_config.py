"""Unit: configuration validation fails fast and names the key at fault."""

from __future__ import annotations

import pytest

import flink_dl
from flink_dl import ClusterConfig, ConfigError, Timeouts
from flink_dl.cluster.registry import validate_config


def _entry(ctx) -> None:
    return None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"roles": {}}, "roles must be a non-empty mapping"),
        ({"roles": {"worker": 0}}, "roles['worker'] must be an integer >= 1"),
        ({"roles": {"worker": "2"}}, "roles['worker']"),
        ({"roles": {"am": 1}}, "reserved"),
        ({"roles": {"bad name": 1}}, "invalid role name"),
        ({"entry": "no_such_module_xyz:main"}, "entry 'no_such_module_xyz:main' is not importable"),
        ({"entry": "json:no_such_function"}, "is not importable"),
        ({"entry": 42}, "entry must be a callable"),
        ({"properties": {"k": 1}}, "properties['k']"),
        ({"env": {"K": None}}, "env['K']"),
        ({"timeouts": {"registration": -1}}, "timeouts.registration"),
        ({"timeouts": {"nope": 1}}, "unknown config key timeouts.nope"),
        ({"timeouts": {"heartbeat_interval": 5, "heartbeat_timeout": 2}},
         "timeouts.heartbeat_interval"),
        ({"daemon_roles": {"ps"}}, "daemon_roles: unknown role 'ps'"),
        ({"daemon_roles": {"worker"}}, "at least one role must not be a daemon"),
        ({"plugin": "nope"}, "plugin: unknown cluster rules 'nope'"),
        ({"rendezvous": "zk"}, "rendezvous: unknown store backend 'zk'"),
        ({"secret": "short"}, "secret must have at least 16"),
        ({"timeouts": {"progress": 0}}, "timeouts.progress"),
        ({"restart": {"attempts": -1}}, "restart.attempts must be an integer >= 0"),
        ({"restart": {"delay_s": "1s"}}, "restart.delay_s"),
        ({"restart": {"failover": "some"}}, "restart.failover"),
        ({"restart": {"tries": 3}}, "unknown config key restart.tries"),
        ({"restart": "3"}, "restart must be a RestartPolicy"),
        ({"input_roles": {"ps"}}, "input_roles: unknown role 'ps'"),
        ({"checkpoint_dir": 5}, "checkpoint_dir must be a string"),
    ],
)
def test_bad_config_names_the_key(kwargs: dict, fragment: str) -> None:
    base = {"roles": {"worker": 2}, "entry": _entry}
    base.update(kwargs)
    with pytest.raises(ConfigError) as info:
        validate_config(ClusterConfig(**base))
    assert fragment in str(info.value)


def test_good_config_and_defaults() -> None:
    config = ClusterConfig(roles={"a": 1, "b": 2, "c": 3}, entry="json:dumps")
    config.validate()
    assert config.total_nodes == 6
    assert isinstance(config.timeouts, Timeouts)
    assert config.timeout.heartbeat_timeout <= 10
    assert len(config.job_id) == 32
    assert config.secret not in repr(config)
    assert ClusterConfig(roles={"a": 1}, entry=_entry).secret != config.secret


def test_unknown_role_in_add_role() -> None:
    from pyflink.datastream import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    config = ClusterConfig(roles={"worker": 1}, entry=_entry)
    with pytest.raises(ConfigError, match="unknown role 'chief'"):
        flink_dl.add_role(env, config, "chief")


def test_entry_reference_resolves() -> None:
    import json

    from flink_dl.config import resolve_entry

    assert resolve_entry("json:dumps") is json.dumps


def test_restart_policy_forms() -> None:
    assert ClusterConfig(roles={"w": 1}, entry=_entry).restart is None
    assert ClusterConfig(roles={"w": 1}, entry=_entry, restart=5).restart == \
        flink_dl.RestartPolicy(attempts=5)
    policy = ClusterConfig(roles={"w": 1}, entry=_entry,
                           restart={"attempts": 2, "delay_s": 0.5}).restart
    assert policy == flink_dl.RestartPolicy(attempts=2, delay_s=0.5, failover="region")
    assert Timeouts().progress == 600.0 and Timeouts().heartbeat_timeout <= 10


def test_restart_policy_configures_flink() -> None:
    from pyflink.datastream import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    config = ClusterConfig(roles={"w": 1}, entry=_entry,
                           restart=flink_dl.RestartPolicy(attempts=4, delay_s=0.25))
    flink_dl.add_cluster(env, config)
    conf = env._j_stream_execution_environment.getConfiguration().toMap()
    assert conf.get("restart-strategy.type") == "fixed-delay"
    assert conf.get("restart-strategy.fixed-delay.attempts") == "4"
    assert conf.get("restart-strategy.fixed-delay.delay") == "250 ms"


def test_missing_input_for_a_role_that_needs_one() -> None:
    from pyflink.datastream import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    config = ClusterConfig(roles={"worker": 2}, entry=_entry, input_roles={"worker"})
    with pytest.raises(ConfigError, match=r"role='worker'.*needs an input"):
        flink_dl.add_role(env, config, "worker")
    with pytest.raises(ConfigError, match=r"roles \['worker'\] need one"):
        flink_dl.add_cluster(env, config)


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("no_input", "needs an input"),
        ("no_checkpoint_dir", "checkpoint_dir"),
        ("no_checkpointing", "enable Flink checkpointing"),
        ("two_roles", "must have this one role"),
        ("epochs", "epochs must be 1"),
        ("with_am", "do not call add_am_role"),
    ],
)
def test_exactly_once_misconfiguration_fails_at_build_time(setup: str, fragment: str,
                                                            tmp_path) -> None:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    if setup != "no_checkpointing":
        env.enable_checkpointing(1000)
    t_env = StreamTableEnvironment.create(env)
    table = None if setup == "no_input" else t_env.from_elements([(1,)], ["v"])
    roles = {"worker": 1, "ps": 1} if setup == "two_roles" else {"worker": 1}
    config = ClusterConfig(roles=roles, entry=_entry,
                           checkpoint_dir=None if setup == "no_checkpoint_dir" else str(tmp_path))
    if setup == "with_am":
        flink_dl.add_am_role(env, config)
    with pytest.raises(ConfigError, match=fragment):
        flink_dl.add_role(env, config, "worker", table, exactly_once=True,
                          epochs=2 if setup == "epochs" else 1)


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("tensorflow", r"TFConfig\(exactly_once=True\): the tensorflow plugin does not "
                       "implement exactly-once training"),
        ("epochs", r"TorchConfig\(exactly_once=True\): epochs must be 1"),
        ("no_model_dir", r"TorchConfig\(exactly_once=True\): set model_dir"),
        ("no_input", r"TorchConfig\(exactly_once=True\) needs an input"),
        ("no_checkpointing", "enable Flink checkpointing"),
        ("not_bool", "exactly_once must be True or False"),
    ],
)
def test_exactly_once_training_misconfiguration_fails_at_build_time(setup: str, fragment: str,
                                                                     tmp_path) -> None:
    """``exactly_once=True`` on a training config: every missing piece is a ConfigError
    naming the config and the key, before Flink starts anything."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    if setup != "no_checkpointing":
        env.enable_checkpointing(1000)
    t_env = StreamTableEnvironment.create(env)
    table = None if setup == "no_input" else t_env.from_elements([(1,)], ["v"])
    options = dict(entry=_entry, exactly_once="yes" if setup == "not_bool" else True,
                   epochs=2 if setup == "epochs" else 1,
                   model_dir=None if setup == "no_model_dir" else str(tmp_path))
    with pytest.raises(ConfigError, match=fragment):
        if setup == "tensorflow":
            from flink_dl.tensorflow import TFConfig
            from flink_dl.tensorflow import train as tf_train

            tf_train(env, table, TFConfig(workers=1, **options))
        else:
            from flink_dl.pytorch import TorchConfig, train

            train(env, table, TorchConfig(world_size=2, **options))


def test_fed_role_with_the_am_operator_refuses_flink_checkpointing() -> None:
    """A fed role whose AM is the (blocking) AM operator would stop at the first checkpoint
    barrier, and with it everything upstream (docs/online-design.md): a ConfigError at
    build time instead of a silent stall; exactly-once roles host their AM and may."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(1000)
    t_env = StreamTableEnvironment.create(env)
    table = t_env.from_elements([(1,)], ["v"])
    config = ClusterConfig(roles={"worker": 1}, entry=_entry)
    with pytest.raises(ConfigError, match=r"checkpointing is enabled.*exactly_once=True"):
        flink_dl.add_role(env, config, "worker", table)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "10", 0, -1])
def test_timeouts_must_be_positive_finite_seconds(value: object) -> None:
    with pytest.raises(ConfigError, match=r"timeouts\.request must be a positive, finite"):
        Timeouts(request=value).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["export_every_s", "collective_timeout_s"])
@pytest.mark.parametrize("value", ["60", True, float("nan"), float("inf"), -1])
def test_training_seconds_are_checked_with_the_key_named(key: str, value: object) -> None:
    from flink_dl.pytorch import TorchConfig

    config = TorchConfig(world_size=1, entry=lambda ctx: None, **{key: value})
    with pytest.raises(ConfigError, match=f"^{key} must be a positive number of seconds"):
        config.validate()


# ------------------------------------------------------------ one declaration of each setting
_SHARED_BAD = [
    ({"timeouts": {"registration": -1}}, "timeouts.registration"),
    ({"restart": {"attempts": -1}}, "restart.attempts must be an integer >= 0"),
    ({"bind_host": ""}, "bind_host must be a non-empty string"),
    ({"advertise_host": 5}, "advertise_host must be a string"),
    ({"job_id": "a b"}, "job_id must use letters"),
    ({"secret": "short"}, "secret must have at least 16"),
    ({"name": ""}, "name must be a non-empty string"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), _SHARED_BAD)
def test_cluster_settings_have_one_check_in_every_config(kwargs: dict, fragment: str) -> None:
    """The cluster settings are one declaration (``ClusterSettings``): the same bad value
    fails with the same message in ``ClusterConfig`` and in both training configs."""
    from flink_dl.pytorch import TorchConfig
    from flink_dl.tensorflow import TFConfig

    configs = [ClusterConfig(roles={"worker": 1}, entry=_entry, **kwargs),
               TorchConfig(entry=_entry, world_size=1, **kwargs),
               TFConfig(entry=_entry, workers=1, **kwargs)]
    for config in configs:
        with pytest.raises(ConfigError) as info:
            config.validate()
        assert fragment in str(info.value), type(config).__name__


def test_training_configs_declare_no_cluster_setting_again() -> None:
    """``TrainingConfig`` derives the cluster settings and re-declares none of them (only
    ``name``'s default differs); its ``ClusterConfig`` gets them as they are."""
    import dataclasses

    from flink_dl import ClusterSettings
    from flink_dl.pytorch import TorchConfig
    from flink_dl.tensorflow import TFConfig
    from flink_dl.training import TrainingConfig

    shared = {f.name for f in dataclasses.fields(ClusterSettings)}
    assert shared == {"timeouts", "restart", "bind_host", "advertise_host", "rendezvous",
                      "rendezvous_dir", "name", "job_id", "secret"}
    for cls in (TrainingConfig, TorchConfig, TFConfig, ClusterConfig):
        assert issubclass(cls, ClusterSettings)
        assert set(vars(cls).get("__annotations__", {})) & shared <= {"name"}, cls.__name__
    torch_config = TorchConfig(entry=_entry, bind_host="10.1.2.3", advertise_host="10.1.2.3",
                               restart=2, timeouts={"registration": 7.0}, job_id="j-1",
                               rendezvous="file", rendezvous_dir="/tmp/rdv", world_size=2)
    assert torch_config.name == "torch" and ClusterSettings().name == "ml-cluster"
    cluster = torch_config.cluster_config(_entry)
    for key in shared:
        if key not in ("timeouts", "restart"):
            assert getattr(cluster, key) == getattr(torch_config, key), key
    assert cluster.timeout.registration == 7.0 and cluster.restart.attempts == 2
    assert cluster.roles == {"worker": 2}
    assert repr(torch_config).count(torch_config.secret) == 0  # secret stays out of repr
    # ClusterConfig keeps its positional roles and entry.
    assert ClusterConfig({"worker": 3}, _entry, bind_host="127.0.0.1").total_nodes == 3
