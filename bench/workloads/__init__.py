"""What the benchmarks measure: flink-dl's jobs and their data, models and tables. A
workload may import drivers, baselines (what it is compared with) and the shared data."""
