"""Mapping ML clusters onto PyFlink jobs: the ``MLCluster`` builder (AM and role operators,
input feeding, output streams), running a job with a deadline, turning a failed job's
error into flink-dl's own exception, and cleaning up after cancelled jobs.

May import ``cluster`` and the layers below it (``config``, ``channel``, ``models``,
``startup``, ``settings``, ``errors``); never ``training``, ``inference`` or a framework.
"""
