"""The ``flink-dl`` command line: ``models`` (list / verify versions) and ``cleanup``."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest

from flink_dl.cli.main import main
from flink_dl.cluster.node import WORK_DIR_PREFIX
from flink_dl.models.store import ModelStore


def _publish(store: ModelStore, text: str, step: int) -> None:
    store.publish(lambda d: (d / "model.bin").write_text(text), step=step, epoch=step // 10,
                  framework="pytorch", metrics={"loss": 1.0 / step})


def test_models_lists_versions_and_marks_latest(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    store = ModelStore(tmp_path / "models")
    _publish(store, "a", 10)
    _publish(store, "b", 20)
    assert main(["models", str(tmp_path / "models"), "--verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[1:3]]
    assert rows[0][:4] == ["1", "10", "1", "pytorch"]
    assert rows[1][:5] == ["*", "2", "20", "2", "pytorch"]
    assert lines[1].endswith("ok") and lines[2].endswith("ok")
    assert '"loss": 0.05' in lines[2]
    assert lines[-1] == "2 version(s); * = LATEST"


def test_models_verify_names_the_torn_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store = ModelStore(tmp_path)
    _publish(store, "a", 10)
    (tmp_path / "v000001" / "model.bin").write_text("tampered")
    assert main(["models", str(tmp_path)]) == 0  # listing alone does not read the files
    assert main(["models", str(tmp_path), "--verify"]) == 1
    assert "BROKEN: model version 1: file 'model.bin'" in capsys.readouterr().out


def test_models_on_an_empty_directory(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", str(tmp_path)]) == 0
    assert "no model version" in capsys.readouterr().out
    assert main(["models", str(tmp_path), "--verify"]) == 1


def test_cleanup_removes_the_jobs_leftovers(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    job = uuid.uuid4().hex
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{job}-0-worker-0-"))
    (tmp_path / job).mkdir()  # its rendezvous scope
    assert main(["cleanup", job, "--rendezvous-dir", str(tmp_path)]) == 0
    assert not work.exists() and not (tmp_path / job).exists()
    assert "removed 2 dir(s)" in capsys.readouterr().out
