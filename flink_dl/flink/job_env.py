"""Preparing a Flink environment for ML clusters, and the config their operators carry.

Restart policy, the Python executable of Flink's workers, the address the AM and nodes
bind (``resolve_bind_host``: loopback on the embedded mini-cluster, every interface on a
real cluster) and ``operator_config``. Used by ``flink.builder``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment

from flink_dl.cluster.leftovers import format_ref, process_ref
from flink_dl.cluster.net import LOOPBACK
from flink_dl.cluster.registry import rules_reference
from flink_dl.config import ClusterConfig, RestartPolicy
from flink_dl.flink.pyflink_adapter import env_setting, j_env_config
from flink_dl.settings import NodeIdentity
from flink_dl.startup import loopback_launcher

log = logging.getLogger(__name__)

#: ``ClusterConfig.entry`` in the config operators carry: the entry travels as bytes.
_SERIALIZED_ENTRY = "flink_dl:serialized_entry"


def operator_config(config: ClusterConfig, env: StreamExecutionEnvironment,
                    **changes: object) -> ClusterConfig:
    """The config the operators carry: the entry travels separately, as bytes, the rules
    as an importable reference (a plugin's registered name means nothing in a Python
    worker that never imported the plugin), ``bind_host`` resolved for where the job
    runs (``resolve_bind_host``), and on the embedded mini-cluster this client named in
    the nodes' ``env`` (``NodeIdentity.client``: its leftovers are orphans once it is
    gone)."""
    node_env = dict(config.env)
    if runs_locally(env):
        node_env.update(NodeIdentity(client=format_ref(process_ref())).to_env())
    return dataclasses.replace(config, entry=_SERIALIZED_ENTRY,
                               plugin=rules_reference(config.plugin),
                               bind_host=config.bind_host or resolve_bind_host(env),
                               env=node_env, **changes)


def runs_locally(env: StreamExecutionEnvironment) -> bool:
    """Whether the job runs on the embedded mini-cluster of this client."""
    return env_setting(env, "execution.target") in (None, "", "local")


def resolve_bind_host(env: StreamExecutionEnvironment) -> str:
    """``127.0.0.1`` when the job runs on the embedded mini-cluster (one host, nothing
    else may dial in); the wildcard when it goes to a real cluster (``flink run``,
    application mode: ``execution.target`` is ``remote``, ``kubernetes-application``,
    ``yarn-application`` ...)."""
    if runs_locally(env):
        return LOOPBACK
    target = env_setting(env, "execution.target")
    log.info("execution.target=%s: ML clusters bind every interface", target)
    return "0.0.0.0"


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


def default_python_executable(env: StreamExecutionEnvironment) -> None:
    """Run Flink's Python workers with this interpreter unless ``python.executable`` is set.

    Without it Flink starts ``python`` from ``PATH``, which often lacks pyflink/flink_dl.
    A local loopback job gets the light worker launcher (:mod:`flink_dl.startup.loopback_launcher`).
    """
    j_conf = j_env_config(env)
    if loopback_launcher.apply(j_conf):
        return
    if not j_conf.toMap().containsKey("python.executable") and sys.executable:
        env.set_python_executable(sys.executable)
