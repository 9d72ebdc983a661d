"""The PyFlink functions that host the AM and the nodes.

Each runs its whole lifecycle inside one ``flat_map`` call (PyFlink does not await
``close()`` in process mode, so nothing important may happen there) and emits one JSON
record describing how it ended.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from pyflink.datastream.functions import FlatMapFunction, RuntimeContext

from flink_dl.cluster.am import AppMaster
from flink_dl.cluster.node import NodeRunner
from flink_dl.config import ClusterConfig
from flink_dl.flink.task_info import attempt_number, subtask_index

log = logging.getLogger(__name__)


class AMFunction(FlatMapFunction):
    """Parallelism-1 operator running the AM of one ML cluster."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.attempt = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        self.attempt = attempt_number(runtime_context)

    def flat_map(self, value: Any) -> Iterator[str]:
        summary = AppMaster(self.config, self.attempt).run()
        yield json.dumps(summary.to_dict())


class NodeFunction(FlatMapFunction):
    """One subtask per node of ``role``: registers, runs the entry process, watches it."""

    def __init__(self, config: ClusterConfig, role: str, entry_bytes: bytes) -> None:
        self.config = config
        self.role = role
        self.entry_bytes = entry_bytes
        self.index = 0
        self.attempt = 0

    def open(self, runtime_context: RuntimeContext) -> None:
        self.index = subtask_index(runtime_context)
        self.attempt = attempt_number(runtime_context)

    def flat_map(self, value: Any) -> Iterator[str]:
        runner = NodeRunner(self.config, self.role, self.index, self.attempt, self.entry_bytes)
        outcome = runner.run()
        yield json.dumps(outcome.to_dict())
