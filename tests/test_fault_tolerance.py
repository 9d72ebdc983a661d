"""Fault injection: restarts of the whole ML cluster, hung entries, exactly-once streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

import flink_dl
from flink_dl import ClusterConfig, RestartPolicy
from tests import ft_entries
from tests.leftovers import wait_clean


def _attempts(out: Path) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for p in out.glob("attempt-*"):
        _, role, index, attempt = p.name.split("-")
        seen.setdefault(f"{role}-{index}", set()).add(int(attempt))
    return seen


def test_killed_node_restarts_whole_cluster(flink_env, tmp_path: Path) -> None:
    """SIGKILL of one node's entry: Flink restarts AM + every node under attempt 1 (process
    and loopback mode)."""
    config = ClusterConfig(roles={"worker": 2}, entry=ft_entries.killed_on_first_attempt,
                           properties={"out": str(tmp_path)},
                           restart=RestartPolicy(attempts=2, delay_s=0.5))
    flink_dl.add_cluster(flink_env, config)
    flink_dl.execute(flink_env, "restart", timeout_s=180)
    assert _attempts(tmp_path) == {"worker-0": {0, 1}, "worker-1": {0, 1}}
    assert wait_clean(config.job_id) == {}


def test_hung_entry_is_detected(process_env, tmp_path: Path) -> None:
    """timeouts.progress: an entry silent for 3 s fails its node (no restart configured)."""
    config = ClusterConfig(roles={"worker": 1}, entry=ft_entries.hangs,
                           properties={"out": str(tmp_path)}, timeouts={"progress": 3})
    flink_dl.add_cluster(process_env, config)
    started = time.monotonic()
    with pytest.raises(Exception, match="entry hung: no progress"):
        flink_dl.execute(process_env, "hung", timeout_s=120)
    assert time.monotonic() - started < 60
    assert wait_clean(config.job_id) == {}


def test_hung_entry_restarts_the_cluster(process_env, tmp_path: Path) -> None:
    """A hung entry (no progress for timeouts.progress=3 s) on attempt 0 fails its node;
    the cluster restarts and attempt 1 (which heartbeats) completes."""
    config = ClusterConfig(roles={"worker": 2}, entry=ft_entries.hangs_on_first_attempt,
                           properties={"out": str(tmp_path)}, timeouts={"progress": 3},
                           restart=RestartPolicy(attempts=2, delay_s=0.2))
    flink_dl.add_cluster(process_env, config)
    started = time.monotonic()
    flink_dl.execute(process_env, "hung-restart", timeout_s=120)
    assert time.monotonic() - started < 90
    assert _attempts(tmp_path) == {"worker-0": {0, 1}, "worker-1": {0, 1}}
    assert wait_clean(config.job_id) == {}


def _node_processes(job_id: str) -> dict[int, list]:
    """The job's live node entry processes by attempt."""
    import psutil

    found: dict[int, list] = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        marker = f"flink-dl-{job_id}-"
        if "flink_dl.cluster.node_main" not in cmd or marker not in cmd:
            continue
        attempt = int(cmd.split(marker, 1)[1].split("-", 1)[0])
        found.setdefault(attempt, []).append(p)
    return found


def completed_checkpoints(checkpoint_dir: Path) -> int:
    """The highest number of a completed Flink checkpoint under ``checkpoint_dir`` (0 if
    none): Flink writes ``<job>/chk-<n>/_metadata`` last when checkpoint n completes."""
    numbers = [int(p.parent.name.split("-", 1)[1])
               for p in checkpoint_dir.glob("*/chk-*/_metadata")]
    return max(numbers, default=0)


def wait_for_covered_state(state_dir: Path, checkpoint_dir: Path, timeout: float,
                           pattern: str = "*/*/state-*") -> bool:
    """Wait until a node saved state (a file matching ``pattern`` under ``state_dir``) and
    two Flink checkpoints completed after that (the second was triggered after the save,
    so its restore resumes from saved state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not list(state_dir.glob(pattern)):
        time.sleep(0.1)
    first = completed_checkpoints(checkpoint_dir)
    while time.monotonic() < deadline:
        if completed_checkpoints(checkpoint_dir) >= first + 2:
            return True
        time.sleep(0.1)
    return False


def kill_repeatedly(job_id: str, kills: int, done: Path, log: list, seed: int = 7,
                    min_wait: float = 1.0, max_wait: float = 3.0, nodes: int = 2,
                    worker_every: int = 2,
                    first_after_checkpoint: tuple[Path, Path, str] | None = None,
                    ready: Callable[[int], bool] | None = None) -> None:
    """Kill ``kills`` times at random moments, each after the previous restart's entries all
    run (their ``attempt-*`` markers are in ``done``): the entry process of a random node,
    or (every ``worker_every``-th kill) the Flink Python worker hosting it. Records
    (kind, attempt, pid, time) in ``log``. ``first_after_checkpoint=(state_dir,
    checkpoint_dir, pattern)``: the first kill waits until a Flink checkpoint covers saved
    node state (so that at least one restart resumes from it, however slow the machine).
    ``ready(attempt)``: each kill also waits until it returns True (e.g. the attempt wrote
    a checkpoint)."""
    import random
    import signal

    rng = random.Random(seed)
    last_attempt = -1
    deadline = time.monotonic() + 400
    while len(log) < kills and time.monotonic() < deadline and not any(done.glob("final-*")):
        procs = _node_processes(job_id)
        newest = max(procs, default=-1)
        entered = len(list(done.glob(f"attempt-*-{newest}")))  # entries running user code
        if newest <= last_attempt or len(procs[newest]) < nodes or entered < nodes:
            time.sleep(0.2)
            continue
        while ready is not None and not ready(newest) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not log and first_after_checkpoint is not None:
            state_dir, checkpoint_dir, pattern = first_after_checkpoint
            wait_for_covered_state(state_dir, checkpoint_dir, timeout=120, pattern=pattern)
        time.sleep(rng.uniform(min_wait, max_wait))
        if any(done.glob("final-*")):
            return
        victim = rng.choice(procs[newest])
        kind = "python-worker" if (len(log) + 1) % worker_every == 0 else "node-entry"
        try:
            pid = victim.ppid() if kind == "python-worker" else victim.pid
            import os

            os.kill(pid, signal.SIGKILL)
        except (OSError, Exception):
            continue
        log.append((kind, newest, pid, time.time()))
        last_attempt = newest


def test_exactly_once_counting_model_under_five_kills(process_env, tmp_path: Path) -> None:
    """A counting "model" (state: count and sum of the records seen) fed a checkpointed
    stream, with 5 random SIGKILLs of node entries and Flink Python workers: the final
    count and sum equal the input's exactly."""
    import threading

    n = 20_000
    env = process_env
    t_env, flink_checkpoints = checkpointed_stream_env(env, tmp_path / "flink-checkpoints")
    # A rate-limited source: an unthrottled one fills Flink's buffers with the whole input
    # at once, and checkpoint barriers then wait behind it until the input is nearly done.
    table = rate_limited_sequence(t_env, n, rows_per_second=800)
    out = tmp_path / "out"
    out.mkdir()
    config = ClusterConfig(roles={"worker": 2}, entry=ft_entries.count_and_sum,
                           properties={"out": str(out), "save_every": "3", "delay": "0.2"},
                           checkpoint_dir=str(tmp_path / "state"),
                           restart=RestartPolicy(attempts=10, delay_s=0.5))
    flink_dl.add_role(env, config, "worker", table, exactly_once=True)
    kills: list = []
    killer = threading.Thread(target=kill_repeatedly, args=(config.job_id, 5, out, kills),
                              kwargs={"first_after_checkpoint": (
                                  tmp_path / "state", flink_checkpoints, "*/*/state-*")},
                              daemon=True)
    killer.start()
    flink_dl.execute(env, "exactly-once", timeout_s=400)
    killer.join(timeout=5)
    import json

    finals = [json.loads(p.read_text()) for p in sorted(out.glob("final-*.json"))]
    assert len(kills) == 5, kills
    assert len(finals) == 2
    assert sum(f["count"] for f in finals) == n
    assert sum(f["sum"] for f in finals) == n * (n + 1) // 2
    assert sum(f["squares"] for f in finals) == n * (n + 1) * (2 * n + 1) // 6
    assert min(f["attempt"] for f in finals) >= 5
    resumes = [json.loads(p.read_text()) for p in out.glob("resume-*")]
    assert any(r["position"] > 0 and r["count"] > 0 for r in resumes), \
        "some restarts resumed from saved node state (not from scratch)"
    assert wait_clean(config.job_id) == {}


def checkpointed_stream_env(env, checkpoint_dir: Path):
    """``env`` at parallelism 1 with a checkpoint every second into ``checkpoint_dir``
    (completed checkpoints show there), and small Arrow batches and bundles (many input
    batches: kills land between them); returns a table environment and the directory."""
    from pyflink.common import Configuration
    from pyflink.table import StreamTableEnvironment

    env.set_parallelism(1)
    env.enable_checkpointing(1000)
    checkpoints = env.get_checkpoint_config()
    checkpoints.set_checkpoint_timeout(60_000)
    checkpoints.set_tolerable_checkpoint_failure_number(1000)
    env.configure(Configuration().set_string("execution.checkpointing.dir",
                                             checkpoint_dir.as_uri()))
    t_env = StreamTableEnvironment.create(env)
    t_env.get_config().set("python.fn-execution.arrow.batch.size", "100")
    t_env.get_config().set("python.fn-execution.bundle.size", "1000")
    return t_env, checkpoint_dir


def rate_limited_sequence(t_env, n: int, rows_per_second: int):
    """A checkpointed stream of ``v`` = 1..n (BIGINT) at ``rows_per_second``."""
    name = f"numbers_{n}_{rows_per_second}"
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {name} (v BIGINT) WITH (
          'connector' = 'datagen', 'rows-per-second' = '{rows_per_second}',
          'fields.v.kind' = 'sequence', 'fields.v.start' = '1', 'fields.v.end' = '{n}')""")
    return t_env.from_path(name)


def _held_out_accuracy(model_dir: Path) -> float:
    """Accuracy of the newest published model on the held-out digits (verified load)."""
    import torch

    from examples import digits
    from flink_dl.models import ModelStore

    version = ModelStore(model_dir).open()
    model = digits.make_model()
    model.load_state_dict(torch.load(version.file("model.pt")))
    held_out = digits.load_split()[1]
    with torch.no_grad():
        logits = model(torch.tensor(held_out[digits.PIXELS].to_numpy()))
    return float((logits.argmax(dim=1).numpy() == held_out["label"].to_numpy()).mean())


def test_digits_training_survives_two_kills(process_env, tmp_path: Path) -> None:
    """PyTorch DDP on digits, a training worker SIGKILLed twice at random moments (its
    entry process, then its Flink Python worker): the job completes from the checkpoints,
    accuracy >= 0.95, and the attempts are recorded."""
    import threading

    from pyflink.table import StreamTableEnvironment

    from examples import digits
    from flink_dl.pytorch import TorchConfig, train

    out = tmp_path / "out"
    out.mkdir()
    t_env = StreamTableEnvironment.create(process_env)
    table = t_env.from_pandas(digits.load_split()[0])
    config = TorchConfig(world_size=2, entry=ft_entries.digits_resumable, epochs=12,
                         model_dir=str(tmp_path / "models"),
                         properties={"out": str(out), "epoch_sleep": "1.0"},
                         restart=RestartPolicy(attempts=8, delay_s=0.5), name="digits-ft")
    train(process_env, table, config)
    kills: list = []
    killer = threading.Thread(target=kill_repeatedly, daemon=True, kwargs=dict(
        job_id=config.job_id, kills=2, done=out, log=kills, seed=3, min_wait=0.5,
        max_wait=3.0, ready=lambda attempt: any(  # each attempt checkpoints before its kill
            (tmp_path / "models" / "checkpoints").glob(f"*/ckpt-*-a{attempt:03d}.pt"))))
    killer.start()
    try:
        flink_dl.execute(process_env, "digits-ft", timeout_s=400)
    finally:
        killer.join(timeout=5)
        print("kills", kills, "attempts", _attempts(out),
              sorted(p.name for p in out.glob("resume-*")))
    assert [k[0] for k in kills] == ["node-entry", "python-worker"], kills
    attempts = _attempts(out)
    assert attempts["worker-0"] == attempts["worker-1"] == {0, 1, 2}, attempts
    resumed = {p.name: int(p.read_text()) for p in out.glob("resume-*")}
    assert resumed.get("resume-0-0", 0) == 0, resumed
    assert resumed["resume-0-2"] == resumed["resume-1-2"] > 0, resumed  # from a checkpoint
    import json

    finals = [json.loads((out / f"final-{r}.json").read_text()) for r in (0, 1)]
    assert {f["attempt"] for f in finals} == {2}
    assert _held_out_accuracy(tmp_path / "models") >= 0.95

    assert wait_clean(config.job_id) == {}


def test_cancel_with_restarts_and_input_leaves_nothing(process_env, tmp_path: Path) -> None:
    """Cancelling a restartable job whose nodes hold shared-memory input channels: zero
    leftover processes, shared-memory files (memfds), temp dirs or rendezvous files."""
    from pyflink.table import StreamTableEnvironment

    t_env = StreamTableEnvironment.create(process_env)
    table = t_env.from_elements([(i,) for i in range(1000)], ["v"])
    config = ClusterConfig(roles={"worker": 2}, entry=ft_entries.read_then_run_forever,
                           properties={"out": str(tmp_path)}, restart=RestartPolicy(attempts=3))
    flink_dl.add_am_role(process_env, config)
    flink_dl.add_role(process_env, config, "worker", table)
    with pytest.raises(flink_dl.ClusterTimeoutError, match="did not finish within"):
        flink_dl.execute(process_env, "cancel-ft", timeout_s=25)
    assert _attempts(tmp_path) == {"worker-0": {0}, "worker-1": {0}}
    assert wait_clean(config.job_id) == {}


def test_job_failing_for_good_leaves_nothing(process_env, tmp_path: Path) -> None:
    """Restarts exhausted (1 allowed): the job fails with the entry's error after attempts 0
    and 1, and nothing of either attempt is left."""
    config = ClusterConfig(roles={"worker": 2}, entry=ft_entries.always_fails,
                           properties={"out": str(tmp_path)},
                           restart=RestartPolicy(attempts=1, delay_s=0.2))
    flink_dl.add_cluster(process_env, config)
    with pytest.raises(Exception, match="fails on attempt 1"):
        flink_dl.execute(process_env, "fail-for-good", timeout_s=120)
    assert _attempts(tmp_path) == {"worker-0": {0, 1}, "worker-1": {0, 1}}
    assert wait_clean(config.job_id) == {}


def test_killed_am_restarts_cluster_and_training_resumes(process_env, tmp_path: Path) -> None:
    """SIGKILL of the process hosting the AM (its Flink Python worker): the nodes lose the
    AM, the cluster restarts under attempt 1 and the workers resume from their checkpoints."""
    import json
    import os
    import signal

    from tests.leftovers import am_pid

    config = ClusterConfig(roles={"worker": 2}, entry=ft_entries.resumable_steps,
                           properties={"out": str(tmp_path), "steps": "12", "step_s": "0.5"},
                           restart=RestartPolicy(attempts=3, delay_s=0.5),
                           timeouts={"heartbeat_timeout": 4})
    flink_dl.add_cluster(process_env, config)
    import threading

    def kill_am() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            steps = tmp_path / "steps-0"
            pid = am_pid(config.job_id) if steps.exists() and int(steps.read_text()) >= 3 \
                else None
            if pid is not None:
                (tmp_path / "am-killed").write_text(str(pid))
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_am, daemon=True)
    killer.start()
    flink_dl.execute(process_env, "am-kill", timeout_s=180)
    killer.join(timeout=5)
    assert (tmp_path / "am-killed").exists()
    attempts = _attempts(tmp_path)
    assert attempts["worker-0"] >= {0, 1} and attempts["worker-1"] >= {0, 1}, attempts
    finals = [json.loads((tmp_path / f"final-{i}.json").read_text()) for i in (0, 1)]
    assert all(f["steps"] == 12 and f["attempt"] >= 1 for f in finals), finals
    last = finals[0]["attempt"]
    assert int((tmp_path / f"resume-0-{last}").read_text()) >= 3, "resumed, not restarted"
    assert wait_clean(config.job_id) == {}
