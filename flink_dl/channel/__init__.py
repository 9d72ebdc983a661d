"""The data plane between a node's Flink operator and its entry process: shared-memory
rings, codecs, the node's input/output API, and exactly-once input.

May import ``flink_dl.errors``, ``flink_dl.fsutil`` and ``flink_dl.settings`` (the layer of
``config`` and ``models``; tests/test_layers.py).
"""
