"""Rendezvous strategies: how the nodes of an ML cluster learn the AM's address.

A strategy is chosen by name (``ClusterConfig.rendezvous``) and answers everything the AM,
the nodes and the job builder ask about rendezvous, given one ``RendezvousParameters``
(in the spirit of torch elastic's ``RendezvousParameters``):

- ``"dataflow"`` (the default): the AM operator emits its address as a record that Flink
  broadcasts to every node operator; there is no store.
- ``"file"``: the AM publishes its address in a ``FileStore`` directory
  (``rendezvous_dir``, by default under the system temp dir) that the nodes poll.
- any store registered with ``flink_dl.cluster.registry.register_store``.

Nothing outside a strategy tests its name. Imports only the cluster's interfaces, the
file store, the config and errors.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from flink_dl.cluster.api import RendezvousStore
from flink_dl.cluster.rendezvous import FileStore
from flink_dl.config import DATAFLOW_RENDEZVOUS, ClusterConfig
from flink_dl.errors import ConfigError

__all__ = ["DataflowRendezvous", "FileRendezvous", "RendezvousParameters",
           "RendezvousStrategy", "StoreFactory", "StoreRendezvous"]

#: A store factory takes (job_id, store options) and returns a store scoped to the job.
StoreFactory = Callable[[str, dict[str, str | None]], RendezvousStore]


@dataclass(frozen=True)
class RendezvousParameters:
    """Everything a rendezvous strategy may need, from one ``ClusterConfig``."""

    #: The strategy's registered name (``ClusterConfig.rendezvous``).
    strategy: str
    #: The job the store entries are scoped to.
    job_id: str
    #: ``ClusterConfig.rendezvous_dir``: the file store's directory (``None``: default).
    dir: str | None = None
    #: ``ClusterConfig.checkpoint_dir``: durable and shared by every host, where a hosted
    #: AM's store defaults to (``for_hosted_am``).
    checkpoint_dir: str | None = None

    @classmethod
    def of(cls, config: ClusterConfig) -> RendezvousParameters:
        """The parameters of ``config``."""
        return cls(config.rendezvous, config.job_id, config.rendezvous_dir,
                   config.checkpoint_dir)

    @property
    def store_options(self) -> dict[str, str | None]:
        """The options a ``StoreFactory`` receives."""
        return {"dir": self.dir}


class RendezvousStrategy(ABC):
    """How nodes find the AM: through the dataflow or through a store."""

    #: The name ``ClusterConfig.rendezvous`` selects it by.
    name: str

    #: Whether the AM operator's address record, broadcast through the dataflow, is how
    #: nodes learn the address (then no store is used and fed nodes wait for it).
    through_dataflow: bool = False

    def validate(self, params: RendezvousParameters) -> None:
        """Raise ``ConfigError`` naming the parameter at fault."""
        if params.dir is not None and not isinstance(params.dir, str):
            raise ConfigError(f"rendezvous_dir must be a string, got {params.dir!r}")

    @abstractmethod
    def store(self, params: RendezvousParameters) -> RendezvousStore | None:
        """The store the AM publishes to and nodes poll; ``None`` when the address travels
        through the dataflow."""

    def for_hosted_am(self, params: RendezvousParameters) -> RendezvousParameters:
        """The parameters for a cluster whose AM runs inside a role's subtask 0
        (exactly-once roles): no dataflow edge leads from it to its siblings, so the
        address must go through a store. Store strategies keep their parameters."""
        return params


class StoreRendezvous(RendezvousStrategy):
    """The AM publishes its address in a store made by ``factory``; nodes poll it."""

    def __init__(self, name: str, factory: StoreFactory) -> None:
        self.name = name
        self.factory = factory

    def store(self, params: RendezvousParameters) -> RendezvousStore:
        return self.factory(params.job_id, params.store_options)


class FileRendezvous(StoreRendezvous):
    """The file store (``FileStore``): ``rendezvous_dir``, by default under the system
    temp dir (shared only by the TaskManagers of one host)."""

    def __init__(self) -> None:
        super().__init__("file", lambda job_id, opts: FileStore(job_id, opts.get("dir")))


class DataflowRendezvous(RendezvousStrategy):
    """The AM operator broadcasts its address through the dataflow: no store, no setting,
    works on any Flink cluster."""

    name = DATAFLOW_RENDEZVOUS
    through_dataflow = True

    def store(self, params: RendezvousParameters) -> None:
        return None

    def for_hosted_am(self, params: RendezvousParameters) -> RendezvousParameters:
        """The file store, under ``rendezvous_dir`` or else ``<checkpoint_dir>/rendezvous``:
        durable and shared by every host, as the nodes' saved state there requires."""
        if params.dir is None and not params.checkpoint_dir:
            raise ConfigError("an ML cluster whose AM a role hosts (exactly_once=True) needs "
                              "checkpoint_dir or rendezvous_dir for its rendezvous store")
        return RendezvousParameters(
            "file", params.job_id,
            params.dir or os.path.join(str(params.checkpoint_dir), "rendezvous"),
            params.checkpoint_dir)
