"""The six-node topology of the start-up and recovery benchmarks and their plain PyFlink
baselines: the AM (one subtask) + roles a:1, b:2, c:3."""

from __future__ import annotations

ROLES = {"a": 1, "b": 2, "c": 3}
#: The node the recovery benchmark kills (role, index).
VICTIM = ("b", 1)
