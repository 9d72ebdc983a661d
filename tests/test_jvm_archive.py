"""The JVM class archive: built once, mapped by the gateway JVM of a later script (its
classes come from the archive, not the jars), and never used when incomplete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flink_dl.settings import SettingsError
from flink_dl.startup import jvm_archive
from flink_dl.startup.client_env import without_loopback_leftovers

SCRIPT = """
import sys
import pandas as pd
import flink_dl
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
flink_dl.use_jvm_archive()
env = StreamExecutionEnvironment.get_execution_environment()
t_env = StreamTableEnvironment.create(env)
frame = t_env.from_pandas(pd.DataFrame({"x": [1.0, 2.0, 3.0]})).to_pandas()
print("SUM", frame["x"].sum())
"""


def _run_small_job(tmp_path: Path, name: str, **extra_env: str) -> tuple[str, list[str]]:
    """Run SCRIPT in a fresh interpreter with class-load logging; (stdout, class-load lines)."""
    class_log = tmp_path / f"{name}.log"
    env = {**without_loopback_leftovers(), **extra_env,
           "JVM_ARGS": f"-Xlog:class+load=info:file={class_log}"}
    env.pop("_python_worker_execution_mode", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, class_log.read_text().splitlines()


def test_gateway_maps_the_built_archive_and_runs_without_it_when_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as after a loopback job in this process: its leftovers must not reach the children
    monkeypatch.setenv("PYFLINK_GATEWAY_DISABLED", "1")
    info = jvm_archive.build_archive()  # a no-op when bootstrap already built it
    assert info.path == jvm_archive.find_archive()
    assert info.size_bytes > 50_000_000  # Flink's runtime and planner classes, not a stub

    stdout, loaded = _run_small_job(tmp_path, "on")
    assert "SUM 6.0" in stdout
    from_archive = [line for line in loaded if "shared objects file (top)" in line]
    flink_from_archive = [line for line in from_archive if "org.apache.flink." in line]
    flink_loaded = [line for line in loaded if "org.apache.flink." in line]
    assert len(flink_from_archive) > 3000
    # most of Flink's classes come from the archive (the rest: generated and planner classes)
    assert len(flink_from_archive) > 0.5 * len(flink_loaded)

    stdout, loaded = _run_small_job(tmp_path, "off", FLINK_DL_JVM_ARCHIVE="0")
    assert "SUM 6.0" in stdout
    assert not [line for line in loaded if "shared objects file (top)" in line]


def _fake_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int,
                  manifest_size: int) -> Path:
    monkeypatch.setenv(jvm_archive.CACHE_DIR_ENV, str(tmp_path))
    key = jvm_archive.archive_key()
    assert key is not None
    folder = tmp_path / "jvm"
    folder.mkdir()
    (folder / f"{key}.jsa").write_bytes(b"\0" * size)
    (folder / f"{key}.json").write_text(json.dumps({"size_bytes": manifest_size}))
    return folder / f"{key}.jsa"


def test_truncated_archive_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a JVM that maps a truncated archive dies of SIGBUS: the size must match the manifest
    _fake_archive(tmp_path, monkeypatch, size=1000, manifest_size=5000)
    monkeypatch.setenv("JVM_ARGS", "-Xmx2g")
    assert jvm_archive.find_archive() is None
    assert jvm_archive.use_jvm_archive() is None
    assert os.environ["JVM_ARGS"] == "-Xmx2g"


def test_jvm_args_keep_the_users_and_are_added_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _fake_archive(tmp_path, monkeypatch, size=1000, manifest_size=1000)
    monkeypatch.setenv("JVM_ARGS", "-Xmx2g -Dfoo=bar")
    assert jvm_archive.use_jvm_archive() == archive
    first = os.environ["JVM_ARGS"]
    assert first.startswith("-Xmx2g -Dfoo=bar ")
    assert f"-XX:SharedArchiveFile={archive}" in first and "-Xshare:auto" in first
    jvm_archive.use_jvm_archive()
    assert os.environ["JVM_ARGS"] == first
    # the user's own archive wins; the switch turns ours off
    assert jvm_archive.jvm_args_with_archive("-XX:SharedArchiveFile=/mine.jsa", archive) == \
        "-XX:SharedArchiveFile=/mine.jsa"
    monkeypatch.setenv("JVM_ARGS", "")
    monkeypatch.setenv(jvm_archive.SWITCH_ENV, "0")
    assert jvm_archive.use_jvm_archive() is None
    assert os.environ["JVM_ARGS"] == ""


def test_bad_build_timeout_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(jvm_archive.BUILD_TIMEOUT_ENV, "soon")
    with pytest.raises(SettingsError, match=jvm_archive.BUILD_TIMEOUT_ENV):
        jvm_archive.build_archive(rebuild=True)


def test_archives_of_removed_installations_are_pruned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(jvm_archive.CACHE_DIR_ENV, str(tmp_path))
    folder = tmp_path / "jvm"
    folder.mkdir()
    for key, home in (("gone", tmp_path / "deleted-venv"), ("kept", tmp_path)):
        (folder / f"{key}.jsa").write_bytes(b"x")
        (folder / f"{key}.json").write_text(json.dumps({"size_bytes": 1,
                                                       "flink_home": str(home)}))
    assert jvm_archive.prune_stale_archives() == 1
    assert sorted(p.name for p in folder.iterdir()) == ["kept.jsa", "kept.json"]
