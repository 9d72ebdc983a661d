"""Cluster configuration: roles, node entry, properties, environment and timeouts.

Everything here is validated when the job is built (``ClusterConfig.validate``), so a
bad configuration fails in the client before Flink starts anything.
"""

from __future__ import annotations

import importlib
import math
import re
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from flink_dl.errors import ArgumentTypeError, ConfigError

AM_ROLE = "am"
#: ``ClusterConfig.rendezvous`` value: the AM's address travels through the Flink dataflow.
DATAFLOW_RENDEZVOUS = "dataflow"
_ROLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_ENTRY_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

EntryFn = Callable[..., Any]
_OPTIONAL_TIMEOUTS = frozenset({"progress"})


@dataclass(frozen=True)
class RestartPolicy:
    """How the ML cluster recovers from a failure. Config keys: ``restart.<field>``.

    A failed or lost node, a failed AM, a killed Python worker or a lost TaskManager fails
    the Flink task; Flink then restarts the AM and every node together (one pipelined
    region) under a new attempt number, up to ``attempts`` times, ``delay_s`` apart.
    ``attempts=0`` fails the job on the first failure.
    """

    #: Restarts allowed before the job fails for good.
    attempts: int = 3
    #: Seconds between a failure and the restart.
    delay_s: float = 1.0
    #: ``"region"`` (restart the connected ML cluster) or ``"full"`` (the whole job).
    failover: str = "region"

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the ``restart.<field>`` at fault."""
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool) \
                or self.attempts < 0:
            raise ConfigError(f"restart.attempts must be an integer >= 0, got {self.attempts!r}")
        if not isinstance(self.delay_s, int | float) or isinstance(self.delay_s, bool) \
                or not math.isfinite(self.delay_s) or self.delay_s < 0:
            raise ConfigError(f"restart.delay_s must be a number of seconds >= 0, "
                              f"got {self.delay_s!r}")
        if self.failover not in ("region", "full"):
            raise ConfigError(f"restart.failover must be 'region' or 'full', "
                              f"got {self.failover!r}")

    @classmethod
    def from_value(cls, value: RestartPolicy | Mapping[str, Any] | int | None
                   ) -> RestartPolicy | None:
        """``None`` (leave Flink's restart strategy alone), a policy, a mapping of its
        fields, or an int (that many attempts)."""
        if value is None or isinstance(value, RestartPolicy):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(attempts=value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"restart must be a RestartPolicy, a mapping or an int, "
                              f"got {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        for key in value:
            if key not in known:
                raise ConfigError(f"unknown config key restart.{key}; known: {sorted(known)}")
        return cls(**dict(value))


@dataclass(frozen=True)
class Timeouts:
    """Every wait of the ML cluster, in seconds. Config keys: ``timeouts.<field>``."""

    #: AM: how long to wait for every node of every role to register.
    registration: float = 180.0
    #: Node: how long to wait for the AM's address (from the dataflow or the rendezvous
    #: store) after its first input.
    rendezvous: float = 180.0
    #: Node: interval between heartbeats to the AM.
    heartbeat_interval: float = 0.5
    #: AM and node: silence after which the peer is declared lost.
    heartbeat_timeout: float = 10.0
    #: Node: how long a stopped entry may take to exit after SIGTERM before SIGKILL.
    stop_grace: float = 10.0
    #: AM: after FAILED/FINISHED, how long to wait for nodes to acknowledge before exiting.
    shutdown: float = 10.0
    #: Network: connect / single request timeout on the control plane.
    request: float = 10.0
    #: Data channel: longest wait for room (backpressure) or data while the peer is alive.
    channel: float = 600.0
    #: Node: a running entry that shows no progress for this long is declared hung and
    #: fails the node (its stacks are in the error); ``None``: off. Progress is
    #: ``ctx.heartbeat()``, reading input, writing output, polling ``ctx.stop_requested``
    #: or ``ctx.wait_for_stop()``, and waiting on Flink (no input yet, output not drained).
    progress: float | None = 600.0
    #: AM: while a node makes no progress, log its status (state, rows read, seconds since
    #: its last progress) this often.
    status_interval: float = 30.0

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the ``timeouts.<field>`` at fault."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in _OPTIONAL_TIMEOUTS:
                continue
            if not is_seconds(value):
                raise ConfigError(
                    f"timeouts.{f.name} must be a positive, finite number of seconds, "
                    f"got {value!r}"
                )
        if self.heartbeat_interval >= self.heartbeat_timeout:
            raise ConfigError(
                "timeouts.heartbeat_interval must be smaller than timeouts.heartbeat_timeout "
                f"({self.heartbeat_interval} >= {self.heartbeat_timeout})"
            )

    @classmethod
    def from_value(cls, value: Timeouts | Mapping[str, float] | None) -> Timeouts:
        """``Timeouts`` from itself, a mapping of field -> seconds, or ``None`` (defaults);
        an unknown key raises ``ConfigError``."""
        if value is None:
            return cls()
        if isinstance(value, Timeouts):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"timeouts must be a Timeouts or a mapping, got {type(value).__name__}"
            )
        known = {f.name for f in fields(cls)}
        for key in value:
            if key not in known:
                raise ConfigError(f"unknown config key timeouts.{key}; known: {sorted(known)}")
        return cls(**dict(value))


@dataclass(kw_only=True)
class ClusterSettings:
    """How an ML cluster waits, restarts, binds, is found and is named: the settings
    ``ClusterConfig`` and every training config (``TorchConfig``, ``TFConfig``) share.

    Both derive from this class, so each of these settings is declared, documented and
    checked here only; a training config hands them to the ``ClusterConfig`` of its job
    as they are (``cluster_settings``). Every field is keyword-only.

    Args:
        timeouts: a ``Timeouts`` or a mapping of its field names.
        restart: a ``RestartPolicy`` (or mapping / int of attempts) that ``add_am_role``
            applies to the Flink job: failures restart the whole ML cluster under a new
            attempt. ``None`` keeps the job's own restart strategy (none by default).
        bind_host: address the AM and the nodes bind their control/data ports to.
            ``None`` (default): chosen when the job is built: ``127.0.0.1`` on the
            embedded mini-cluster, every interface (``0.0.0.0``) on a real cluster.
        advertise_host: address published to peers. Default: a specific ``bind_host``;
            under the wildcard the AM advertises every address of its host and each
            node the address of its route to the AM (``flink_dl.cluster.net``).
        rendezvous: how nodes find the AM: the name of a registered rendezvous strategy
            (``flink_dl.cluster.rendezvous_strategy``). ``"dataflow"`` (default): the AM
            operator emits its address as a record that Flink broadcasts to every node
            (no shared storage, no setting; works on any Flink cluster). Or the name of
            a registered rendezvous store (``"file"``), which the AM publishes to and
            nodes poll. Exactly-once roles (which host the AM themselves) use the file
            store under ``checkpoint_dir`` unless another store is named.
        rendezvous_dir: the file store's directory; must be shared by every
            TaskManager host (defaults to a directory under the system temp dir).
        name: prefix of the Flink operator names.
        job_id: identifies this job run (generated when not given).
        secret: per-job secret the nodes use to authenticate (generated when not given).
    """

    timeouts: Timeouts | Mapping[str, float] | None = None
    restart: RestartPolicy | Mapping[str, Any] | int | None = None
    bind_host: str | None = None
    advertise_host: str | None = None
    rendezvous: str = DATAFLOW_RENDEZVOUS
    rendezvous_dir: str | None = None
    name: str = "ml-cluster"
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)

    @property
    def timeout(self) -> Timeouts:
        """The validated ``Timeouts`` (``timeouts`` normalised)."""
        return Timeouts.from_value(self.timeouts)

    def cluster_settings(self) -> dict[str, Any]:
        """These settings by field name, as they are (what a training config hands the
        ``ClusterConfig`` of its job)."""
        return {f.name: getattr(self, f.name) for f in fields(ClusterSettings)}

    def validate_settings(self) -> None:
        """Check these settings' own values; raise ``ConfigError`` naming the key at fault
        (the rendezvous strategy's name and parameters are checked by the cluster layer's
        ``validate_config``)."""
        self.timeout.validate()
        restart = RestartPolicy.from_value(self.restart)
        if restart is not None:
            restart.validate()
        if self.bind_host is not None and (not isinstance(self.bind_host, str)
                                           or not self.bind_host):
            raise ConfigError(f"bind_host must be a non-empty string (or None: chosen when "
                              f"the job is built), got {self.bind_host!r}")
        if self.advertise_host is not None and not isinstance(self.advertise_host, str):
            raise ConfigError(f"advertise_host must be a string, got {self.advertise_host!r}")
        for key in ("rendezvous", "name", "job_id", "secret"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
        if not re.match(r"^[A-Za-z0-9_-]+$", self.job_id):
            raise ConfigError(f"job_id must use letters, digits, '_' and '-', got {self.job_id!r}")
        if len(self.secret) < 16:
            raise ConfigError("secret must have at least 16 characters")


@dataclass
class ClusterConfig(ClusterSettings):
    """Configuration of one ML cluster: an AM plus groups of nodes in named roles.

    It takes every ``ClusterSettings`` field too (timeouts, restart, placement, rendezvous,
    name, job_id, secret; keyword-only).

    Args:
        roles: role name -> number of nodes, e.g. ``{"worker": 2, "ps": 1}``.
        entry: the node's user code: a callable taking a ``NodeContext`` or a
            ``"module:function"`` reference. Runs in a child process of each node.
        properties: string properties every node sees as ``ctx.properties``.
        env: environment variables set for the node process.
        daemon_roles: roles whose nodes run until the AM tells them to stop
            (e.g. ``ps``); the cluster is done when every other node has finished.
        plugin: name of the registered cluster rules (state machine) to use.
        checkpoint_dir: durable directory (shared by every host) where nodes keep their
            state for exactly-once stream training (``ctx.save_state``/``ctx.load_state``).
        input_roles: roles whose nodes need an input stream: ``add_role`` without
            ``input`` (and ``add_cluster``) refuse them at build time.
    """

    roles: Mapping[str, int]
    entry: EntryFn | str
    properties: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    daemon_roles: frozenset[str] | set[str] | tuple[str, ...] = frozenset()
    plugin: str = "default"
    checkpoint_dir: str | None = None
    input_roles: frozenset[str] | set[str] | tuple[str, ...] = frozenset()

    def __post_init__(self) -> None:
        if isinstance(self.input_roles, set | tuple | list | frozenset):
            self.input_roles = frozenset(self.input_roles)
        self.timeouts = Timeouts.from_value(self.timeouts)
        self.restart = RestartPolicy.from_value(self.restart)
        self.daemon_roles = frozenset(self.daemon_roles)
        self.roles = dict(self.roles) if isinstance(self.roles, Mapping) else self.roles
        self.properties = (
            dict(self.properties) if isinstance(self.properties, Mapping) else self.properties
        )
        self.env = dict(self.env) if isinstance(self.env, Mapping) else self.env

    @property
    def total_nodes(self) -> int:
        """Nodes of every role together."""
        return sum(self.roles.values())

    def validate(self) -> None:
        """Check every field's own value; raise ``ConfigError`` naming the key at fault.

        The names it refers to (``plugin``'s rules, the ``rendezvous`` strategy and its
        parameters) live in the cluster layer's registries:
        ``flink_dl.cluster.registry.validate_config`` checks them too, and the job
        builder calls it."""
        if not isinstance(self.roles, Mapping) or not self.roles:
            raise ConfigError("roles must be a non-empty mapping of role name -> node count")
        for role, count in self.roles.items():
            if not isinstance(role, str) or not _ROLE_NAME.match(role):
                raise ConfigError(
                    f"roles: invalid role name {role!r} (letters, digits, '_' and '-', "
                    "starting with a letter)"
                )
            if role == AM_ROLE:
                raise ConfigError(f"roles: {AM_ROLE!r} is reserved for the application master")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ConfigError(f"roles[{role!r}] must be an integer >= 1, got {count!r}")
        for role in self.daemon_roles:
            if role not in self.roles:
                raise ConfigError(f"daemon_roles: unknown role {role!r}; roles: {list(self.roles)}")
        if not isinstance(self.input_roles, frozenset):
            raise ConfigError(f"input_roles must be a set of role names, got "
                              f"{type(self.input_roles).__name__}")
        for role in self.input_roles:
            if role not in self.roles:
                raise ConfigError(f"input_roles: unknown role {role!r}; roles: {list(self.roles)}")
        if set(self.daemon_roles) == set(self.roles):
            raise ConfigError("daemon_roles: at least one role must not be a daemon role")
        validate_entry(self.entry, "entry")
        _validate_str_map(self.properties, "properties")
        _validate_str_map(self.env, "env")
        self.validate_settings()
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str):
            raise ConfigError(f"checkpoint_dir must be a string path, got {self.checkpoint_dir!r}")
        if not isinstance(self.plugin, str) or not self.plugin:
            raise ConfigError(f"plugin must be a non-empty string, got {self.plugin!r}")

    def check_role(self, role: str) -> int:
        """Return the node count of ``role``; raise ``ConfigError`` if it is unknown."""
        if role not in self.roles:
            raise ConfigError(f"unknown role {role!r}; roles of this cluster: {list(self.roles)}")
        return self.roles[role]


def validate_entry(entry: object, key: str) -> None:
    """Check that ``entry`` is a callable or an importable ``"module:function"``."""
    if callable(entry):
        return
    if not isinstance(entry, str) or not _ENTRY_REF.match(entry):
        raise ConfigError(f"{key} must be a callable or 'module:function', got {entry!r}")
    try:
        resolve_entry(entry)
    except Exception as exc:
        raise ConfigError(f"{key} {entry!r} is not importable: {exc}") from exc


def is_count(value: object) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_seconds(value: object) -> bool:
    """A positive, finite ``int`` or ``float`` (not a ``bool``)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def resolve_entry(entry: EntryFn | str) -> EntryFn:
    """Turn an entry reference into the callable it names."""
    if callable(entry):
        return entry
    module_name, _, attr_path = entry.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ArgumentTypeError(f"{entry!r} is not callable")
    return obj


def _validate_str_map(value: object, key: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping of str -> str, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigError(f"{key}[{k!r}] must map a str to a str, got {type(v).__name__}")
