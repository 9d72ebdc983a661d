"""``TrainingEntry``: the node entry of a training process, one shape for every framework.

It carries the user's entry as bytes (``serialize_entry``: user code travels by value) and
the job's options; in the node's process it sets the framework up, builds its context,
calls the user's entry and tears the framework down. A teardown that fails never hides
the user's own error, and never fails an entry that returned: it is logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from flink_dl.cluster.context import NodeContext

log = logging.getLogger(__name__)


class TrainingEntry:
    """Base of ``TorchEntry`` and ``TFEntry``: subclasses implement ``session``."""

    def __init__(self, user_entry: bytes, options: dict[str, Any]) -> None:
        self.user_entry = user_entry
        self.options = options

    def __call__(self, node: NodeContext) -> Any:
        import cloudpickle

        from flink_dl.config import resolve_entry

        entry = resolve_entry(cloudpickle.loads(self.user_entry))
        with self.session(node) as ctx:
            return entry(ctx)

    @contextlib.contextmanager
    def session(self, node: NodeContext) -> Iterator[Any]:
        """Set the framework up, yield the context the user's entry gets, tear down."""
        raise NotImplementedError
        yield  # pragma: no cover


def teardown(step: Callable[[], None], what: str) -> None:
    """Run a teardown step; log (never raise) what it raised, so that the user's error,
    if any, is the one reported."""
    try:
        step()
    except Exception as exc:
        log.warning("%s failed (ignored): %s: %s", what, type(exc).__name__, exc)
