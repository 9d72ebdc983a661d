from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import pytest
from pyflink.datastream import StreamExecutionEnvironment

import flink_dl

logging.basicConfig(level=logging.INFO)
# The tests' gateway JVM starts from the class archive, as a user's script that calls it.
flink_dl.use_jvm_archive()


@contextlib.contextmanager
def execution_mode(mode: str) -> Iterator[StreamExecutionEnvironment]:
    """A fresh local environment whose Python operators run in ``mode`` (process/loopback)."""
    previous = os.environ.get("_python_worker_execution_mode")
    os.environ["_python_worker_execution_mode"] = mode
    try:
        yield StreamExecutionEnvironment.get_execution_environment()
    finally:
        if previous is None:
            os.environ.pop("_python_worker_execution_mode", None)
        else:
            os.environ["_python_worker_execution_mode"] = previous


@pytest.fixture(params=["process", "loopback"])
def flink_env(request: pytest.FixtureRequest) -> Iterator[StreamExecutionEnvironment]:
    """A local environment, once per Python execution mode."""
    with execution_mode(request.param) as env:
        yield env


@pytest.fixture
def process_env() -> Iterator[StreamExecutionEnvironment]:
    """A local environment in process mode (Python workers in their own processes)."""
    with execution_mode("process") as env:
        yield env
