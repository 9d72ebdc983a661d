"""Start-up machinery: make Flink, its Python workers and flink-dl's processes start fast
and run lean, without changing what a job computes.

``jvm_archive`` (the gateway JVM's class archive), ``loopback_launcher``/``loopback_boot``
(the light launcher of local Python workers), ``worker_isolation`` (a Python worker per
flink-dl operator), ``worker_tuning`` (Beam's sampler without its thread), ``quiet_hangup``
(a job's end logs no Beam tracebacks), ``malloc_tuning``
(glibc's allocator in batch loops) and ``client_env`` (the client's environment around a
job). Each is switched by a ``flink_dl.settings.RuntimeSettings`` field.

May import the standard library, ``flink_dl.errors``, ``flink_dl.settings`` and
``flink_dl.flink.pyflink_adapter`` (PyFlink's private attributes), and PyFlink or Beam
inside functions; nothing else of flink-dl (the archive's warm-up jobs, which build an ML
cluster, are ``flink_dl.cli.jvm_archive_warmup``'s, run in a child process). Importing
this package has no side effects.
"""
