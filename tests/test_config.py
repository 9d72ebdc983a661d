"""Unit: configuration validation fails fast and names the key at fault."""

from __future__ import annotations

import pytest

import flink_dl
from flink_dl import ClusterConfig, ConfigError, Timeouts


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
    ],
)
def test_bad_config_names_the_key(kwargs: dict, fragment: str) -> None:
    base = {"roles": {"worker": 2}, "entry": _entry}
    base.update(kwargs)
    with pytest.raises(ConfigError) as info:
        ClusterConfig(**base).validate()
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
