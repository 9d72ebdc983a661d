from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from pyflink.datastream import StreamExecutionEnvironment

logging.basicConfig(level=logging.INFO)


@pytest.fixture(params=["process", "loopback"])
def flink_env(request: pytest.FixtureRequest) -> Iterator[StreamExecutionEnvironment]:
    """A fresh local StreamExecutionEnvironment in the given Python execution mode."""
    previous = os.environ.get("_python_worker_execution_mode")
    os.environ["_python_worker_execution_mode"] = request.param
    env = StreamExecutionEnvironment.get_execution_environment()
    try:
        yield env
    finally:
        if previous is None:
            os.environ.pop("_python_worker_execution_mode", None)
        else:
            os.environ["_python_worker_execution_mode"] = previous
