"""Registries of cluster rules (state machines) and rendezvous store backends, by name."""

from __future__ import annotations

from collections.abc import Callable

from flink_dl.cluster.api import ClusterRules, RendezvousStore
from flink_dl.errors import ConfigError

#: A store factory takes (job_id, config options) and returns a store scoped to the job.
StoreFactory = Callable[[str, dict[str, str | None]], RendezvousStore]

_RULES: dict[str, Callable[[], ClusterRules]] = {}
_STORES: dict[str, StoreFactory] = {}


def register_rules(name: str, factory: Callable[[], ClusterRules]) -> None:
    """Register cluster rules under ``name`` (``ClusterConfig(plugin=name)`` selects them)."""
    _RULES[name] = factory


def get_rules(name: str) -> ClusterRules:
    _load_builtins()
    try:
        return _RULES[name]()
    except KeyError:
        raise ConfigError(
            f"plugin: unknown cluster rules {name!r}; known: {sorted(_RULES)}"
        ) from None


def register_store(name: str, factory: StoreFactory) -> None:
    """Register a rendezvous store backend (``ClusterConfig(rendezvous=name)`` selects it)."""
    _STORES[name] = factory


def get_store_factory(name: str) -> StoreFactory:
    _load_builtins()
    try:
        return _STORES[name]
    except KeyError:
        raise ConfigError(
            f"rendezvous: unknown store backend {name!r}; known: {sorted(_STORES)}"
        ) from None


def _load_builtins() -> None:
    if "default" not in _RULES:
        from flink_dl.cluster.rules import DefaultRules

        register_rules("default", DefaultRules)
    if "tensorflow" not in _RULES:
        from flink_dl.tensorflow.rules import TensorFlowRules

        register_rules("tensorflow", TensorFlowRules)
    if "file" not in _STORES:
        from flink_dl.cluster.rendezvous import FileStore

        register_store("file", lambda job_id, opts: FileStore(job_id, opts.get("dir")))
