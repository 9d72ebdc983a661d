"""The client keeps its log handlers when PyFlink's loopback pool replaces them."""

from __future__ import annotations

import io
import logging
import threading

from flink_dl.startup import client_logging


def test_handlers_come_back_after_the_pool_replaces_them_and_the_level_too() -> None:
    """What the pool does when it starts a worker (root handlers := [Beam's], root level
    set from Flink's config): the client's handler is added back beside Beam's, and the
    level set back; a record then reaches both."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    mine, beams = io.StringIO(), io.StringIO()
    client = logging.StreamHandler(mine)
    beam = logging.StreamHandler(beams)
    root.addHandler(client)
    root.setLevel(logging.INFO)
    try:
        keeper = threading.Thread(target=client_logging.give_back,
                                  args=(list(root.handlers), logging.INFO, 5.0))
        keeper.start()
        root.handlers = [beam]  # the pool's replacement
        root.setLevel(logging.WARNING)
        keeper.join(5)
        assert not keeper.is_alive()
        assert client in root.handlers and beam in root.handlers
        assert root.level == logging.INFO
        logging.getLogger("flink_dl.flink.execute").info("job ran past its timeout")
        assert "ran past its timeout" in mine.getvalue()
        assert "ran past its timeout" in beams.getvalue()
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)


def test_a_client_without_handlers_is_left_alone() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    client_logging.give_back([], root.level, 0.1)
    assert root.handlers == before
