"""Unit tests of the cluster lifecycle (issue 12, points 1, 6, 9): Flink job id pinning,
error translation, the progress default, stderr tails, the rules registry, the MLCluster
handle and the core's import boundaries."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flink_dl
from flink_dl.cluster.entry_launch import StderrTail
from flink_dl.cluster.registry import get_rules, register_rules, rules_reference
from flink_dl.cluster.rules import DefaultRules
from flink_dl.config import ClusterConfig, Timeouts
from flink_dl.errors import (
    ClusterFailedError,
    ClusterNodeFailedError,
    ConfigError,
    NodeFailedError,
)
from flink_dl.flink.failures import flink_dl_error, translate_errors

ROOT = Path(__file__).resolve().parents[1]

# What PyFlink's Py4JJavaError says when a node failed (shape measured on PyFlink 2.3,
# process mode): Java causes, Beam's traceback, then the Python exception and its message.
_NODE_TRACE = textwrap.dedent("""\
    line 1 of the node traceback
      File "/work/x/entries.py", line 9, in boom
        raise ValueError("boom from worker 1")
    ValueError: boom from worker 1
    --- last lines of the entry's stderr (up to 1 lines) ---
    a line the entry printed""")
_JAVA_TEXT = (
    "An error occurred while calling o87.get.\n"
    ": java.util.concurrent.ExecutionException: org.apache.flink.runtime.client."
    "JobExecutionException: Job execution failed.\n"
    "\tat java.base/java.util.concurrent.CompletableFuture.reportGet(CompletableFuture.java:396)\n"
    "Caused by: java.lang.RuntimeException: Error received from SDK harness for instruction 1:"
    " Traceback (most recent call last):\n"
    '  File "/venv/apache_beam/runners/worker/sdk_worker.py", line 311, in _execute\n'
    "    response = task()\n"
    "flink_dl.errors.ClusterFailedError: ML cluster of job j attempt 0 FAILED:\n"
    "  ML node worker:1 (role 'worker', index 1) FAILED: ValueError: boom\n"
    "\n\tat org.apache.beam.sdk.util.MoreFutures.get(MoreFutures.java:61)\n"
    "Caused by: java.lang.RuntimeException: Error received from SDK harness for instruction 2:"
    " Traceback (most recent call last):\n"
    '  File "/work/x/flink_dl/cluster/watch.py", line 157, in _report_exit\n'
    "    raise self._failure(summary, traceback)\n"
    "flink_dl.errors.NodeFailedError: ML node worker:1 (role 'worker', index 1) of job j "
    "attempt 0 failed: ValueError: boom from worker 1\n"
    + _NODE_TRACE + "\n"
    "\n\tat java.base/java.util.concurrent.CompletableFuture.get(CompletableFuture.java:2073)\n"
    "\t... 7 more\n"
)


class _Py4JLikeError(Exception):
    """Stands in for ``Py4JJavaError`` (its ``str`` is the Java trace)."""


def test_progress_timeout_is_finite_by_default_and_none_turns_it_off() -> None:
    defaults = Timeouts()
    assert defaults.progress is not None and 60 <= defaults.progress <= 3600
    assert 0 < defaults.status_interval < defaults.progress
    Timeouts(progress=None).validate()
    with pytest.raises(ConfigError, match=r"timeouts\.status_interval"):
        Timeouts(status_interval=0).validate()


def test_node_error_is_found_in_the_java_trace_with_the_node_traceback_first() -> None:
    cause = _Py4JLikeError(_JAVA_TEXT)
    error = flink_dl_error(cause)
    assert isinstance(error, NodeFailedError)
    message = str(error)
    assert message.startswith("ML node worker:1 (role 'worker', index 1) of job j attempt 0 "
                              "failed: ValueError: boom from worker 1\n")
    assert message.endswith(_NODE_TRACE)
    assert "\tat " not in message and "Caused by" not in message and "apache" not in message
    assert error.__cause__ is cause


def test_cluster_error_when_no_node_error_and_none_for_foreign_errors() -> None:
    only_cluster = _JAVA_TEXT[:_JAVA_TEXT.index("Caused by: java.lang.RuntimeException: Error "
                                                "received from SDK harness for instruction 2")]
    error = flink_dl_error(_Py4JLikeError(only_cluster))
    assert isinstance(error, ClusterFailedError)
    assert str(error) == ("ML cluster of job j attempt 0 FAILED:\n"
                          "  ML node worker:1 (role 'worker', index 1) FAILED: ValueError: boom")
    assert flink_dl_error(_Py4JLikeError("java.lang.OutOfMemoryError: heap\n\tat x.y(z)")) is None
    assert flink_dl_error(_Py4JLikeError("mymodule.NodeFailedError: not ours")) is None
    own = NodeFailedError("x")
    assert flink_dl_error(own) is own


def test_no_slots_says_what_it_means_and_where_the_log_is() -> None:
    """CI's mini-cluster lost its TaskManager to a FATAL error; every restart then failed
    with this, which alone tells a user nothing."""
    from flink_dl.errors import SlotsUnavailableError

    java = ("org.apache.flink.runtime.client.JobExecutionException: Job execution failed.\n"
            "\tat org.apache.flink.runtime.jobmaster.JobResult.toJobExecutionResult(x)\n"
            "Caused by: org.apache.flink.runtime.jobmanager.scheduler."
            "NoResourceAvailableException: Could not acquire the minimum required resources.")
    cause = _Py4JLikeError(java)
    error = flink_dl_error(cause)
    assert isinstance(error, SlotsUnavailableError) and error.__cause__ is cause
    assert "TaskManager stopped" in str(error) and "parallelism" in str(error)
    assert str(error).rstrip(")").endswith(os.path.join("pyflink", "log"))
    # a node's own error, when the job carries one, still comes first
    assert isinstance(flink_dl_error(_Py4JLikeError(_JAVA_TEXT + "\n" + java)),
                      NodeFailedError)


def test_am_error_reaching_the_client_first_still_leads_with_the_node_report() -> None:
    """The AM's error may be the job's root cause (it fails as soon as the node reported):
    it is a NodeFailedError too, led by the node's whole report."""
    from flink_dl.cluster.am import AppMaster

    config = ClusterConfig(roles={"worker": 2}, entry="tests.entries:record")
    am = AppMaster(config)
    am.cluster.handle({"type": "failed", "role": "worker", "index": 1,
                "error": "ML node worker:1 (role 'worker', index 1) ... failed: X\nTraceback"})
    error = am.cluster.failure()
    assert isinstance(error, ClusterNodeFailedError)
    assert isinstance(error, NodeFailedError) and isinstance(error, ClusterFailedError)
    assert str(error).startswith("ML node worker:1 (role 'worker', index 1) ... failed: X\n"
                                 "Traceback\n(the ML cluster of job ")
    assert "ML node worker:0 PENDING" in str(error)
    am.close()
    java = _JAVA_TEXT.replace("flink_dl.errors.NodeFailedError", "flink_dl.errors."
                              "ClusterNodeFailedError").replace(
        "flink_dl.errors.ClusterFailedError", "flink_dl.errors.ClusterFailedError")
    found = flink_dl_error(_Py4JLikeError(java))
    assert type(found) is ClusterNodeFailedError and str(found).endswith(_NODE_TRACE)


def test_translate_errors_raises_the_flink_dl_error_and_keeps_others() -> None:
    cause = _Py4JLikeError(_JAVA_TEXT)
    with pytest.raises(NodeFailedError) as info, flink_dl.translate_errors():
        raise cause
    assert info.value.__cause__ is cause
    with pytest.raises(KeyError), translate_errors():
        raise KeyError("unrelated")


def test_stderr_tail_forwards_every_line_and_keeps_the_last_ones(capfd) -> None:
    script = "import sys\nfor i in range(200): print(f'line {i:03d} ' + 'x' * 100, file=sys.stderr)"
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    tail = StderrTail(proc.stderr, "t", lines=50, max_bytes=2000)
    proc.wait(timeout=30)
    tail.wait_eof(10)
    # Only this script's lines: fd 2 may also carry late lines of earlier tests' threads.
    forwarded = [line for line in capfd.readouterr().err.splitlines()
                 if line.startswith("line ") and line.endswith("x" * 100)]
    assert len(forwarded) == 200 and forwarded[0].startswith("line 000")
    text = tail.text()
    assert text.endswith("line 199 " + "x" * 100 + "\n")
    assert len(text.encode()) <= 2000 and "line 180" not in text
    assert text.startswith("line ")  # whole lines only


def test_rules_by_reference_registered_name_and_plugin_self_registration(tmp_path: Path,
                                                                         monkeypatch) -> None:
    module = tmp_path / "my_rules_plugin.py"
    module.write_text(textwrap.dedent("""\
        from flink_dl.cluster.registry import register_rules
        from flink_dl.cluster.rules import DefaultRules

        class MyRules(DefaultRules):
            name = "mine"

        register_rules("mine", MyRules)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown cluster rules 'mine'.*module:Class"):
        get_rules("mine")
    rules = get_rules("my_rules_plugin:MyRules")
    assert type(rules).__name__ == "MyRules"
    assert get_rules("mine").name == "mine"  # the import registered the name
    assert rules_reference("mine") == "my_rules_plugin:MyRules"
    assert rules_reference("default") == "flink_dl.cluster.rules:DefaultRules"
    with pytest.raises(ConfigError, match="cannot import cluster rules 'no_such_mod:X'"):
        get_rules("no_such_mod:X")
    register_rules("local-lambda", lambda: DefaultRules())
    assert rules_reference("local-lambda") == "local-lambda"  # no importable reference


def test_tensorflow_name_works_once_its_rules_module_is_imported() -> None:
    code = textwrap.dedent("""\
        from flink_dl.cluster.registry import get_rules
        from flink_dl.errors import ConfigError
        try:
            get_rules("tensorflow")
            raise SystemExit("the core knew the TensorFlow rules by itself")
        except ConfigError:
            pass
        rules = get_rules("flink_dl.tensorflow.rules:TensorFlowRules")
        assert get_rules("tensorflow").name == rules.name == "tensorflow"
        import sys
        assert "tensorflow" not in sys.modules, "the rules must not import TensorFlow"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_core_cluster_package_imports_no_flink_or_framework_plugin() -> None:
    """Every import in flink_dl/cluster, at any level (function-local ones too)."""
    bad = {}
    for path in sorted((ROOT / "flink_dl" / "cluster").glob("*.py")):
        found = [name for name in _imports(path)
                 if name.split(".")[:2] in (["flink_dl", "flink"], ["flink_dl", "tensorflow"],
                                            ["flink_dl", "pytorch"])]
        if found:
            bad[path.name] = found
    assert bad == {}


def test_node_runner_split_by_concern() -> None:
    """AM client, process supervision and the watch loop live in modules of their own."""
    from flink_dl.cluster import am_client, entry_process, node, watch

    assert node.AMConnection is am_client.AMConnection and node.find_am is am_client.find_am
    assert hasattr(entry_process, "EntryProcess") and hasattr(watch, "NodeWatch")
    assert len((ROOT / "flink_dl" / "cluster" / "node.py").read_text().splitlines()) < 400


def test_every_package_says_its_one_job() -> None:
    for package in ("cluster", "channel", "flink", "pytorch", "tensorflow", "inference",
                    "models", "cli"):
        doc = ast.get_docstring(ast.parse((ROOT / "flink_dl" / package / "__init__.py")
                                          .read_text()))
        assert doc and len(doc) > 40, f"flink_dl.{package} has no package docstring"


def test_ml_cluster_handle_keeps_the_clusters_of_its_environment() -> None:
    from pyflink.datastream import StreamExecutionEnvironment

    from flink_dl.flink.clusters import cluster_configs_of, clusters_of
    from flink_dl.flink.job_id import JOB_ID_KEY

    env = StreamExecutionEnvironment.get_execution_environment()
    other = StreamExecutionEnvironment.get_execution_environment()
    config = ClusterConfig(roles={"worker": 2, "ps": 1}, entry="tests.entries:record",
                           daemon_roles={"ps"})
    cluster = flink_dl.ml_cluster(env, config)
    assert flink_dl.ml_cluster(env, config) is cluster
    am = cluster.add_am_role()
    assert cluster.am is am and cluster.outcomes is am
    workers = cluster.add_role("worker")
    assert flink_dl.add_role(env, config, "ps") is cluster.roles["ps"]
    assert set(cluster.roles) == {"worker", "ps"} and cluster.roles["worker"] is workers
    assert cluster.outcomes is not None
    assert clusters_of(env) == [cluster] and cluster_configs_of(env) == [config]
    assert clusters_of(other) == []
    # another Python wrapper of the same Java environment (as a pipeline's model stage
    # makes from a Table) sees the same clusters, so execute/cleanup find them all
    same = StreamExecutionEnvironment(env._j_stream_execution_environment)
    assert clusters_of(same) == [cluster] and flink_dl.ml_cluster(same, config) is cluster
    with pytest.raises(ConfigError, match="has its AM already"):
        flink_dl.add_am_role(env, config)
    with pytest.raises(ConfigError, match=r"role='worker'.*added already"):
        cluster.add_role("worker")
    clash = ClusterConfig(roles={"x": 1}, entry="tests.entries:record", job_id=config.job_id)
    with pytest.raises(ConfigError, match="job_id"):
        flink_dl.ml_cluster(env, clash)
    # The next job of env carries the cluster's job id; the listener takes it off.
    conf = env._j_stream_execution_environment.getConfiguration()
    assert conf.toMap().get(JOB_ID_KEY) == config.job_id
    env._flink_dl_job_id_pin.onJobSubmitted(None, None)
    assert not conf.toMap().containsKey(JOB_ID_KEY)
