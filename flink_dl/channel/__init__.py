"""The data plane between a node's Flink operator and its entry process: shared-memory
rings, codecs, the node's input/output API, and exactly-once input."""
