"""Node entries the online learners run (imported by reference in the node processes)."""

from __future__ import annotations

from typing import Any


def ftrl_entry(ctx: Any) -> None:
    """Logistic regression with FTRL-Proximal on ``ctx.features`` / ``ctx.label``: bounded
    input trains ``ctx.epochs`` passes and publishes once; a stream (``streaming``
    property) publishes by the export clock and whenever it has caught up with its input
    (``loader.caught_up()``), with ``pipeline_dir`` a pipeline version for each model
    version, and a final version when its input ends (a bounded stream, or Flink's stop
    with drain).

    ``step`` and the ``samples`` metric count from the job's start: each checkpoint keeps
    them and a restart goes on from the restored one's (exactly-once: the sample count of
    every version is the number of input rows it was trained on)."""
    import torch

    from flink_dl.online.ftrl import FTRL, initial_model

    props = ctx.properties
    model = initial_model(len(ctx.features), float(props.get("prior", 0.5)))
    optimizer = FTRL(model.parameters(), alpha=float(props["alpha"]),
                     beta=float(props["beta"]), l1=float(props["l1"]), l2=float(props["l2"]))
    streaming = props.get("streaming") == "1"
    pipeline_dir = props.get("pipeline_dir")
    step, seen = 0, 0
    if streaming:  # after a restart: the newest checkpoint (exactly-once: agreed by ranks)
        _, step = ctx.resume(model, optimizer)
        seen = int(ctx.restored_extra.get("samples", 0))
    else:
        ctx.warm_start(model)
    published = step  # a restored checkpoint's step was published before it was written
    loss = None
    for epoch in range(ctx.epochs):
        loader = ctx.dataloader(int(props["batch_size"]))
        for batch in loader:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(batch["features"]).squeeze(1), batch["label"].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            seen += len(batch["label"])
            ctx.log_progress(step=step, samples=seen, loss=loss)
            if streaming:
                # by the clock, and whenever it has learned every row there is for now
                version = ctx.maybe_save_model(model, step=step, torchscript=True,
                                               metrics={"samples": seen},
                                               now=loader.caught_up())
                if ctx.last_export_step == step:  # every rank: a new version is due
                    ctx.save_checkpoint(model, optimizer, epoch=0, step=step, samples=seen)
                    published = step
                _publish_pipeline(pipeline_dir, version)
        ctx.report(epoch=epoch, step=step, samples=seen,
                   loss=None if loss is None else round(float(loss.item()), 5))
    if not streaming:
        ctx.save_model(model, step=step, torchscript=True, metrics={"samples": seen})
    elif step != published:  # the input ended (stop with drain): publish what it taught
        version = ctx.save_model(model, step=step, torchscript=True, metrics={"samples": seen})
        ctx.save_checkpoint(model, optimizer, epoch=0, step=step, samples=seen)
        _publish_pipeline(pipeline_dir, version)


def _publish_pipeline(pipeline_dir: str | None, version: Any) -> None:
    """A pipeline version with the new model version (when both are there)."""
    if version is not None and pipeline_dir:
        from flink_dl.pipeline.pipeline import publish_model

        publish_model(pipeline_dir, version)
