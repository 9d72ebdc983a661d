"""Node entries of the fault-tolerance tests (pickled by value into the job)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from flink_dl import NodeContext


def _mark_attempt(ctx: NodeContext) -> Path:
    out = Path(ctx.properties["out"])
    (out / f"attempt-{ctx.role}-{ctx.index}-{ctx.attempt}").write_text(str(os.getpid()))
    return out


def killed_on_first_attempt(ctx: NodeContext) -> dict:
    """Attempt 0: worker 1 SIGKILLs itself, the others wait to be stopped. Later: finish."""
    _mark_attempt(ctx)
    if ctx.attempt == 0:
        if ctx.index == 1:
            time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGKILL)
        ctx.wait_for_stop(timeout=120)
        return {}
    time.sleep(0.5)
    return {"attempt": ctx.attempt}


def hangs(ctx: NodeContext) -> None:
    """Never reports progress (a hung entry)."""
    _mark_attempt(ctx)
    time.sleep(600)


def count_and_sum(ctx: NodeContext) -> None:
    """A counting "model": its state is the number and the sum of the records it saw.

    Saves its state every few batches (exactly-once roles), works slowly so that kills land
    mid-stream, and writes the final state when the input ends.
    """
    state = ctx.load_state() or {"count": 0, "sum": 0, "squares": 0, "batches": 0}
    out = _mark_attempt(ctx)
    (out / f"resume-{ctx.index}-{ctx.attempt}").write_text(json.dumps(
        {"position": ctx.input_position, "count": state["count"]}))
    every = int(ctx.properties.get("save_every", "3"))
    delay = float(ctx.properties.get("delay", "0.05"))
    for batch in ctx.batches():
        values = batch.column("v").to_numpy()
        state["count"] += len(values)
        state["sum"] += int(values.sum())
        state["squares"] += int((values * values).sum())
        state["batches"] += 1
        if state["batches"] % every == 0:
            ctx.save_state(state)
        time.sleep(delay)
    ctx.save_state(state)
    (out / f"final-{ctx.index}.json").write_text(json.dumps(
        {**state, "attempt": ctx.attempt, "position": ctx.input_position}))


def digits_resumable(ctx) -> dict:
    """The digits training entry, resumable: checkpoint every epoch, resume after restarts.

    Sleeps ``epoch_sleep`` seconds per epoch so that kills land mid-training.
    """
    import torch

    from examples.digits import PIXELS, make_model

    out = _mark_attempt(ctx.node)
    torch.manual_seed(0)
    module = make_model()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.003)
    loader = ctx.dataloader(32, features=PIXELS, label="label")
    start, step = ctx.resume(module, optimizer, loader)
    model = ctx.prepare_model(module)
    (out / f"resume-{ctx.rank}-{ctx.attempt}").write_text(str(start))
    for epoch in range(start, ctx.epochs):
        for batch in loader:
            loss = torch.nn.functional.cross_entropy(model(batch["features"]), batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        ctx.report(step=step, epoch=epoch, loss=loss.item())
        ctx.save_checkpoint(model, optimizer, epoch=epoch, step=step)
        time.sleep(float(ctx.properties.get("epoch_sleep", "0")))
    ctx.save_model(model, step=step)
    (out / f"final-{ctx.rank}.json").write_text(json.dumps({"attempt": ctx.attempt,
                                                            "steps": step}))
    return {"rank": ctx.rank, "attempt": ctx.attempt}


def resumable_steps(ctx: NodeContext) -> dict:
    """``steps`` one-second steps; the step count is checkpointed to ``<out>/steps-<index>``
    after each step and resumed from after a restart."""
    out = _mark_attempt(ctx)
    steps = int(ctx.properties.get("steps", "20"))
    state = out / f"steps-{ctx.index}"
    done = int(state.read_text()) if state.exists() else 0
    (out / f"resume-{ctx.index}-{ctx.attempt}").write_text(str(done))
    while done < steps:
        time.sleep(float(ctx.properties.get("step_s", "1.0")))
        done += 1
        tmp = state.with_suffix(".tmp")
        tmp.write_text(str(done))
        os.replace(tmp, state)
        ctx.heartbeat()
    (out / f"final-{ctx.index}.json").write_text(json.dumps({"attempt": ctx.attempt,
                                                            "steps": done}))
    return {"index": ctx.index, "attempt": ctx.attempt}


def read_then_run_forever(ctx: NodeContext) -> None:
    """Reads its input, records its pid, then runs until killed."""
    _mark_attempt(ctx)
    for _ in ctx.batches():
        pass
    while True:
        time.sleep(0.2)


def always_fails(ctx: NodeContext) -> None:
    _mark_attempt(ctx)
    raise RuntimeError(f"fails on attempt {ctx.attempt}")


def hangs_on_first_attempt(ctx: NodeContext) -> None:
    """Attempt 0: hangs (no progress); later attempts: heartbeat a few times and finish."""
    _mark_attempt(ctx)
    if ctx.attempt == 0:
        time.sleep(600)
    for _ in range(4):
        time.sleep(0.5)
        ctx.heartbeat()
