"""Versioned model directories: atomic publish, verified load (framework-neutral)."""

from flink_dl.models.store import ModelStore, ModelVersion, TornModelError

__all__ = ["ModelStore", "ModelVersion", "TornModelError"]
