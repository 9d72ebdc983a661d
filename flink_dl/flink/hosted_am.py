"""The cluster's AM run in a thread of a Flink operator: of the AM operator, or of an
exactly-once role's subtask 0."""

from __future__ import annotations

import threading
from typing import Any

from flink_dl.cluster.am import AppMaster
from flink_dl.config import ClusterConfig


class HostedAM:
    """The cluster's AM in a thread: of the AM operator, or of an exactly-once role's
    subtask 0."""

    def __init__(self, config: ClusterConfig, attempt: int) -> None:
        self.am = AppMaster(config, attempt)
        self.am.start()
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="flink-dl-am")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.summary = self.am.run().to_dict()
        except BaseException as exc:
            self.error = exc

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def join(self) -> dict[str, Any]:
        self.thread.join()
        from flink_dl.cluster import prewarm

        prewarm.discard(self.am.config.job_id)  # entry processes no node took
        self.raise_if_failed()
        assert self.summary is not None
        return self.summary
