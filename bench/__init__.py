"""flink-dl's benchmarks: ``python -m bench`` (or ``bash bench/run.sh``).

``registry`` holds each benchmark (name, title, run function, goal) and ``catalog``
registers them in run order; ``drivers`` run, time and print them; ``workloads`` are what
is measured and ``baselines`` what it is compared with.
"""
