"""The real-time loop: training samples from serving (``join_labels``), online learners
(``FTRL``, ``FTRLLogisticRegression``, ``OnlineStandardScaler``), quality and drift
(``monitor``). Design and status: docs/online-design.md.

Attributes load lazily, like the top-level package (Flink workers import concurrently).
"""

from __future__ import annotations

from flink_dl.lazy import lazy_exports

_EXPORTS = {
    "join_labels": "flink_dl.online.labels",
    "FTRL": "flink_dl.online.ftrl",
    "FTRLLogisticRegression": "flink_dl.online.learners",
    "OnlineStandardScaler": "flink_dl.online.scaler",
    "Histogram": "flink_dl.online.quality",
    "Reference": "flink_dl.online.quality",
    "Rule": "flink_dl.online.quality",
    "alerts": "flink_dl.online.quality",
    "monitor": "flink_dl.online.quality",
    "reference_histograms": "flink_dl.online.quality",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("flink_dl.online", _EXPORTS, globals())
