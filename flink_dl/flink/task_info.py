"""Subtask index and attempt number from a PyFlink ``RuntimeContext``, in every execution mode."""

from __future__ import annotations

from typing import Any


def subtask_index(rc: Any) -> int:
    try:
        return int(rc.get_index_of_this_subtask())
    except AttributeError:  # thread mode: PyFlink calls Java methods Flink 2.x removed
        return int(rc._runtime_context.getTaskInfo().getIndexOfThisSubtask())


def attempt_number(rc: Any) -> int:
    try:
        return int(rc.get_attempt_number())
    except AttributeError:
        return int(rc._runtime_context.getTaskInfo().getAttemptNumber())
