"""A worker's session creator for between-graph (ps layout) training."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


class PollingWorkerSessionCreator(tf.compat.v1.train.SessionCreator):
    """Waits for the chief's variables like TensorFlow's worker creator, but polls every
    ``poll_s`` seconds (TensorFlow's own waits 30 s between checks)."""

    def __init__(self, scaffold: Any, master: str, config: Any, poll_s: float,
                 wait_s: float) -> None:
        self.scaffold = scaffold
        self.master = master
        self.config = config
        self.poll_s = poll_s
        self.wait_s = wait_s

    def create_session(self) -> Any:
        self.scaffold.finalize()
        manager = tf.compat.v1.train.SessionManager(
            local_init_op=self.scaffold.local_init_op,
            local_init_feed_dict=self.scaffold.local_init_feed_dict,
            ready_op=self.scaffold.ready_op,
            ready_for_local_init_op=self.scaffold.ready_for_local_init_op,
            graph=tf.compat.v1.get_default_graph(), recovery_wait_secs=self.poll_s)
        return manager.wait_for_session(self.master, config=self.config,
                                        max_wait_secs=self.wait_s)
