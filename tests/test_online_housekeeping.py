"""Online learning's housekeeping without a job: routine events log at INFO at most every
few seconds, progress lines read well, and version stores stay bounded (old versions
removed, young ones spared for readers that are still opening them)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
import torch

from flink_dl.errors import ConfigError
from flink_dl.log import EveryFewSeconds
from flink_dl.models.store import ModelStore
from flink_dl.pipeline import PipelineModel, StandardScalerModel, TorchModel, publish_model
from flink_dl.pipeline.pipeline import ONLINE_KEEP_FOR_S, ONLINE_KEEP_VERSIONS
from flink_dl.training.progress import ProgressLine


def _publish(store: ModelStore, count: int) -> None:
    for _ in range(count):
        store.publish(lambda d: (d / "w.txt").write_text("w"))


def _age(root: Path, seconds: float) -> None:
    """Make every version directory under ``root`` look ``seconds`` old."""
    past = time.time() - seconds
    for entry in root.glob("v*"):
        os.utime(entry, (past, past))


def test_routine_events_log_at_info_once_per_interval(caplog) -> None:
    logger = logging.getLogger("flink_dl.test_throttle")
    throttle = EveryFewSeconds(logger, interval_s=0.2)
    with caplog.at_level(logging.DEBUG, logger="flink_dl.test_throttle"):
        for number in range(50):
            throttle.log("now serving version %d", number)
        time.sleep(0.25)
        throttle.log("now serving version %d", 50)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert info == ["now serving version 0",
                    "now serving version 50 (49 more since the last such line)"]
    assert len(debug) == 49


def test_progress_line_reads_rows_steps_version_loss_and_rate(caplog) -> None:
    logger = logging.getLogger("flink_dl.test_progress")
    line = ProgressLine(logger, interval_s=0.05)
    assert not line.due()
    time.sleep(0.06)
    assert line.due()
    with caplog.at_level(logging.INFO, logger="flink_dl.test_progress"):
        line.log("rank 0", rows=12_345, step=12_345, version=617,
                 metrics={"samples": 12_345, "loss": torch.tensor(0.31234, requires_grad=True)})
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("rank 0: 12,345 rows read, step 12,345, ")
    assert "rows/s, version 617, samples 12,345, loss 0.3123 (" in message
    assert not line.due()


def test_pruning_keeps_the_newest_and_spares_young_versions(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, keep_last=3, keep_for_s=60)
    _publish(store, 6)
    assert store.version_numbers() == [1, 2, 3, 4, 5, 6]   # all younger than 60 s
    _age(tmp_path, 120)
    _publish(store, 1)
    assert store.version_numbers() == [5, 6, 7]
    assert store.open().version == 7
    plain = ModelStore(tmp_path / "plain", keep_last=2)        # no grace: as before
    _publish(plain, 5)
    assert plain.version_numbers() == [4, 5]
    with pytest.raises(ConfigError, match="keep_for_s"):
        ModelStore(tmp_path, keep_last=2, keep_for_s=-1)


def test_publish_model_prunes_old_pipeline_versions_by_default(tmp_path: Path) -> None:
    """An online learner publishes a pipeline version per model version: the pipeline
    directory keeps the newest ``ONLINE_KEEP_VERSIONS`` once they are older than
    ``ONLINE_KEEP_FOR_S``, so its size stays flat however long the stream runs."""
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    torch.jit.save(torch.jit.script(torch.nn.Linear(1, 1)), model_dir / "model.ts")
    pipes = tmp_path / "pipes"
    PipelineModel([StandardScalerModel(["a"], [0.5], [2.0]),
                   TorchModel(model_dir / "model.ts", ["a"])]).save(pipes)
    store = ModelStore(pipes)
    extra = 15
    for _ in range(ONLINE_KEEP_VERSIONS + extra):
        publish_model(pipes, model_dir)
    assert len(store.version_numbers()) == ONLINE_KEEP_VERSIONS + extra + 1  # all young
    _age(pipes, ONLINE_KEEP_FOR_S + 1)
    sizes = []
    for _ in range(3 * ONLINE_KEEP_VERSIONS):
        publish_model(pipes, model_dir)
        _age(pipes, ONLINE_KEEP_FOR_S + 1)
        sizes.append(sum(f.stat().st_size for f in pipes.rglob("*") if f.is_file()))
    newest = store.latest_number()
    assert store.version_numbers() == list(range(newest - ONLINE_KEEP_VERSIONS + 1,
                                                 newest + 1))
    assert max(sizes[1:]) == min(sizes[1:])                   # flat
    assert PipelineModel.load(pipes).stages[0].mean == [0.5]   # the newest is whole
    publish_model(pipes, model_dir, keep_versions=None)         # opt out: keeps all
    assert len(store.version_numbers()) == ONLINE_KEEP_VERSIONS + 1


def test_a_writer_killed_before_moving_latest_does_not_block_the_next(tmp_path: Path) -> None:
    """A version renamed into place whose writer died before ``LATEST`` moved: the next
    publish takes the number after it instead of failing on the rename forever (seen as
    "Directory not empty" on every restart of an exactly-once learner killed there)."""
    store = ModelStore(tmp_path)
    _publish(store, 3)
    (tmp_path / "LATEST").write_text("v000002")           # as if killed after v3's rename
    _publish(store, 1)
    assert store.version_numbers() == [1, 2, 3, 4]
    assert store.latest_number() == 4 and store.open().version == 4
    (tmp_path / "v000005").mkdir()                         # a torn one, no manifest
    _publish(store, 1)
    assert store.latest_number() == 6
