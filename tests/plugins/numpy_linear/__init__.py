"""A third framework plugin, for the tests only: linear regression in plain numpy.

It is built on the public plugin contract alone (``flink_dl.training``,
``flink_dl.inference``, ``flink_dl.pipeline``) and needs no edit outside this folder:
``LinearConfig`` (the job), ``LinearContext`` (what the entry sees; all-reduce over the
nodes' reserved sockets), ``LinearEntry``/``train`` (the node entry, the job), and
``LinearHandler``/``predict`` and ``LinearEstimator``/``LinearModel`` (serving, pipelines).
"""
