"""The ``flink-dl`` command line: inspect and verify model directories, clean up after a
job on this host, run a demo cluster.

The top layer: may import any flink-dl package.
"""
