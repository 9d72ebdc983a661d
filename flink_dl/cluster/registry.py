"""Registries of cluster rules (state machines) and rendezvous strategies, by name.

The core knows only its own built-ins (``"default"`` rules; the ``"dataflow"`` and
``"file"`` rendezvous strategies, ``flink_dl.cluster.rendezvous_strategy``). Plugins
register their own rules when their module is imported (``register_rules(name, cls)``), or
a config names them by reference: ``ClusterConfig(plugin="package.module:Rules")`` imports
the module (which may register names on import) and uses the class. The builder ships the
reference form to the operators (``rules_reference``), so Flink's Python workers, which
import nothing of the plugin by themselves, find the same rules.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable

from flink_dl.cluster.api import ClusterRules
from flink_dl.cluster.rendezvous_strategy import (
    DataflowRendezvous,
    FileRendezvous,
    RendezvousParameters,
    RendezvousStrategy,
    StoreFactory,
    StoreRendezvous,
)
from flink_dl.config import ClusterConfig
from flink_dl.errors import ConfigError

_RULES: dict[str, Callable[[], ClusterRules]] = {}
_RENDEZVOUS: dict[str, RendezvousStrategy] = {
    strategy.name: strategy for strategy in (DataflowRendezvous(), FileRendezvous())}
_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def register_rules(name: str, factory: Callable[[], ClusterRules]) -> None:
    """Register cluster rules under ``name`` (``ClusterConfig(plugin=name)`` selects them)."""
    _RULES[name] = factory


def get_rules(name: str) -> ClusterRules:
    """New rules for ``name``: a registered name or a ``"module:attr"`` reference."""
    return _rules_factory(name)()


def rules_reference(name: str) -> str:
    """``name`` as a ``"module:attr"`` reference any process can import, when its factory
    is a module-level class or function; else ``name`` itself."""
    factory = _rules_factory(name)
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        return name
    reference = f"{module}:{qualname}"
    try:
        if _import_reference(reference) is factory:
            return reference
    except (ImportError, AttributeError):
        pass
    return name


def _rules_factory(name: str) -> Callable[[], ClusterRules]:
    _load_builtins()
    factory = _RULES.get(name)
    if factory is not None:
        return factory
    if isinstance(name, str) and _REFERENCE.match(name):
        try:
            factory = _import_reference(name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"plugin: cannot import cluster rules {name!r}: {exc}") from exc
        if not callable(factory):
            raise ConfigError(f"plugin: {name!r} is not a ClusterRules class or factory")
        return factory
    raise ConfigError(
        f"plugin: unknown cluster rules {name!r}; known: {sorted(_RULES)} (or name them "
        "as 'module:Class'; plugins register theirs when their module is imported)"
    )


def _import_reference(reference: str) -> Callable[[], ClusterRules]:
    module_name, _, attr_path = reference.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def register_rendezvous(strategy: RendezvousStrategy) -> None:
    """Register a rendezvous strategy (``ClusterConfig(rendezvous=strategy.name)`` selects
    it)."""
    _RENDEZVOUS[strategy.name] = strategy


def register_store(name: str, factory: StoreFactory) -> None:
    """Register a rendezvous store backend (``ClusterConfig(rendezvous=name)`` selects it):
    the AM publishes its address there and the nodes poll it."""
    register_rendezvous(StoreRendezvous(name, factory))


def get_rendezvous(name: str) -> RendezvousStrategy:
    """The rendezvous strategy registered as ``name``."""
    try:
        return _RENDEZVOUS[name]
    except KeyError:
        raise ConfigError(
            f"rendezvous: unknown store backend {name!r}; known: {sorted(_RENDEZVOUS)}"
        ) from None


def rendezvous_of(config: ClusterConfig) -> tuple[RendezvousStrategy, RendezvousParameters]:
    """The strategy ``config.rendezvous`` names, and its parameters from ``config``."""
    return get_rendezvous(config.rendezvous), RendezvousParameters.of(config)


def hosted_am_config(config: ClusterConfig) -> ClusterConfig:
    """``config`` for a cluster whose AM a role's subtask 0 hosts (exactly-once roles):
    with the rendezvous its strategy chooses then (``for_hosted_am``)."""
    strategy, params = rendezvous_of(config)
    hosted = strategy.for_hosted_am(params)
    if hosted == params:
        return config
    return dataclasses.replace(config, rendezvous=hosted.strategy, rendezvous_dir=hosted.dir)


def validate_config(config: ClusterConfig) -> None:
    """``config.validate()``, then the names it refers to: its cluster rules
    (``plugin``) and its rendezvous strategy with its parameters. Raises ``ConfigError``
    naming the key at fault."""
    config.validate()
    get_rules(config.plugin)
    strategy, params = rendezvous_of(config)
    strategy.validate(params)


def _load_builtins() -> None:
    if "default" not in _RULES:
        from flink_dl.cluster.rules import DefaultRules

        register_rules("default", DefaultRules)

