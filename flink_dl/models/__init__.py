"""Versioned model directories: atomic publish, verified load (framework-neutral).

May import ``flink_dl.errors`` and ``flink_dl.fsutil`` only.
"""

from flink_dl.models.store import ModelStore, ModelVersion, TornModelError

__all__ = ["ModelStore", "ModelVersion", "TornModelError"]
