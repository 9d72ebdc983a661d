"""``TrainingEntry``: the node entry of a training process, one shape for every framework.

It carries the user's entry as bytes (``serialize_entry``: user code travels by value) and
the job's ``TrainingOptions`` (pickled with it); in the node's process it sets the
framework up, builds its context, calls the user's entry and tears the framework down. A
teardown that fails never hides the user's own error, and never fails an entry that
returned: it is logged.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from flink_dl.cluster.context import NodeContext
from flink_dl.training.options import TrainingOptions

log = logging.getLogger(__name__)


class TrainingEntry(ABC):
    """Base of every plugin's node entry (``TorchEntry``, ``TFEntry``): subclasses
    implement ``session``; ``build`` makes one per job from the user's entry and the
    config's options."""

    def __init__(self, user_entry: bytes, options: TrainingOptions) -> None:
        self.user_entry = user_entry
        self.options = options

    def __call__(self, node: NodeContext) -> Any:
        import cloudpickle

        from flink_dl.config import resolve_entry

        entry = resolve_entry(cloudpickle.loads(self.user_entry))
        with self.session(node) as ctx:
            return entry(ctx)

    @abstractmethod
    def session(self, node: NodeContext) -> contextlib.AbstractContextManager[Any]:
        """A context manager (``contextlib.contextmanager``) that sets the framework up,
        yields the context the user's entry gets and tears the framework down."""


def teardown(step: Callable[[], None], what: str) -> None:
    """Run a teardown step; log (never raise) what it raised, so that the user's error,
    if any, is the one reported."""
    try:
        step()
    except Exception as exc:
        log.warning("%s failed (ignored): %s: %s", what, type(exc).__name__, exc)
