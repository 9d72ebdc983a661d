"""What the benchmarks compare flink-dl with: plain PyFlink, plain PyTorch and
``tf.distribute`` limits, Ray Train + Ray Data, Flink's sources alone, hand-written SQL
and scikit-learn. A baseline imports drivers and the shared data, models and topology
(``bench.workloads.data``, ``tf_models``, ``six_nodes``), never the workload it is compared
with."""
