"""Exactly-once stream training through ``ctx.dataloader`` with 2 DDP ranks, under kills."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import flink_dl
from flink_dl import RestartPolicy
from tests import ft_entries
from tests.leftovers import wait_clean
from tests.test_fault_tolerance import (
    checkpointed_stream_env,
    kill_repeatedly,
    rate_limited_sequence,
)


def test_ddp_counting_model_is_exactly_once_under_three_kills(process_env,
                                                              tmp_path: Path) -> None:
    """2 DDP ranks train a counting model on a checkpointed stream through
    ``ctx.dataloader`` with ``TorchConfig(exactly_once=True)``; 3 random SIGKILLs (a rank's
    entry process, a Flink Python worker, an entry again). The model's count, sum and sum
    of squares equal the input's exactly: every row reached exactly one rank's optimizer
    step exactly once."""
    from flink_dl.pytorch import TorchConfig, train

    n = 15_000
    env = process_env
    t_env, flink_checkpoints = checkpointed_stream_env(env, tmp_path / "flink-checkpoints")
    table = rate_limited_sequence(t_env, n, rows_per_second=350)
    out = tmp_path / "out"
    out.mkdir()
    models = tmp_path / "models"
    config = TorchConfig(world_size=2, entry=ft_entries.counting_ddp, exactly_once=True,
                         model_dir=str(models),
                         properties={"out": str(out), "batch": "70", "save_every": "3",
                                     "delay": "0.05"},
                         restart=RestartPolicy(attempts=10, delay_s=0.5), name="eo-ddp")
    train(env, table, config)
    kills: list = []
    killer = threading.Thread(target=kill_repeatedly, daemon=True, kwargs=dict(
        job_id=config.job_id, kills=3, done=out, log=kills, seed=11, min_wait=3.0, max_wait=6.0,
        first_after_checkpoint=(models / "checkpoints", flink_checkpoints, "*/*/pos-*")))
    killer.start()
    flink_dl.execute(env, "exactly-once-ddp", timeout_s=400)
    killer.join(timeout=5)

    finals = [json.loads(p.read_text()) for p in sorted(out.glob("final-*.json"))]
    assert len(kills) == 3, kills
    assert [k[0] for k in kills] == ["node-entry", "python-worker", "node-entry"]
    assert len(finals) == 2
    for final in finals:  # both ranks hold the same model
        assert final["count"] == n
        assert final["sum"] == n * (n + 1) // 2
        assert final["squares"] == n * (n + 1) * (2 * n + 1) // 6
        assert final["attempt"] >= 3
    resumes = [json.loads(p.read_text()) for p in out.glob("resume-*")]
    assert any(r["step"] > 0 and r["total"][0] > 0 for r in resumes), \
        "some restart resumed from a checkpoint (not from scratch)"
    assert wait_clean(config.job_id) == {}
