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


def counting_ddp(ctx) -> None:
    """A counting "model" trained with DDP, exactly once: its one float64 parameter holds
    the count, sum and sum of squares of every row any rank trained on. Each step's
    gradient is minus the rank's batch statistics times the world size; DDP averages them
    and SGD(lr=1) adds their sum (integers below 2**53: exact in float64)."""
    import torch

    class Counter(torch.nn.Module):
        def __init__(self, world_size: int) -> None:
            super().__init__()
            self.world_size = world_size
            self.total = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))

        def forward(self, stats: torch.Tensor) -> torch.Tensor:
            return (self.total * stats).sum() * self.world_size

    out = _mark_attempt(ctx.node)
    model = Counter(ctx.world_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = ctx.dataloader(int(ctx.properties.get("batch", "50")), columns=["v"])
    _, step = ctx.resume(model, optimizer, loader)
    (out / f"resume-{ctx.rank}-{ctx.attempt}").write_text(json.dumps(
        {"step": step, "total": model.total.detach().tolist()}))
    ddp = ctx.prepare_model(model)
    every = int(ctx.properties.get("save_every", "4"))
    delay = float(ctx.properties.get("delay", "0.05"))
    for batch in loader:
        v = batch["v"].to(torch.float64)
        stats = torch.stack([torch.tensor(float(len(v)), dtype=torch.float64), v.sum(),
                             (v * v).sum()])
        loss = -ddp(stats)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % every == 0:
            ctx.save_checkpoint(ddp, optimizer, epoch=0, step=step)
        time.sleep(delay)
    count, total, squares = (int(x) for x in model.total.detach().tolist())
    (out / f"final-{ctx.rank}.json").write_text(json.dumps(
        {"attempt": ctx.attempt, "count": count, "sum": total, "squares": squares,
         "steps": step}))
