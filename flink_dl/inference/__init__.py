"""Inference on Flink: a ``ModelHandler`` interface, in-operator and distributed predict."""
