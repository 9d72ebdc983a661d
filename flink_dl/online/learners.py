"""``FTRLLogisticRegression``: an online logistic regression as a pipeline stage.

It is a ``TorchEstimator`` whose entry the library provides: an ``nn.Linear`` trained with
the ``FTRL`` optimizer, one rank. ``fit(table)`` trains on a bounded table like any
estimator; ``fit_stream(samples, pipeline_dir)`` adds, to the samples' job, training that
never ends: it publishes a model version every ``export_every_steps`` steps or
``export_every_s`` seconds and, with ``pipeline_dir``, a pipeline version with the new model
(``publish_model``), which a job serving that directory swaps in. ``init_from`` starts from
a batch-trained ``nn.Linear`` of the same width (FTRL keeps its weights, see ``FTRL``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pyflink.datastream import DataStream
from pyflink.table import Table

from flink_dl.errors import ConfigError
from flink_dl.models.store import ModelVersion
from flink_dl.pipeline.learners import env_of, expand_features
from flink_dl.pytorch.learner import TorchEstimator

ENTRY = "flink_dl.online.entries:ftrl_entry"
#: Model versions ``FTRLLogisticRegression`` keeps in its ``model_dir`` unless
#: ``keep_versions=`` says otherwise (a stream publishes one every export; each published
#: version is copied into the pipeline version that serves it).
FTRL_KEEP_VERSIONS = 10
#: How often ``fit_stream`` publishes a version unless ``export_every_steps=`` or
#: ``export_every_s=`` says otherwise (seconds; see docs/benchmarks.md, "Online learning
#: against River").
STREAM_EXPORT_EVERY_S = 0.5


def probability(logits: Any) -> Any:
    """The model's logit as a click probability."""
    import torch

    return torch.sigmoid(logits)


class FTRLLogisticRegression(TorchEstimator):
    """FTRL-Proximal logistic regression (Flink ML's ``OnlineLogisticRegression``, Alink's
    FTRL) on the PyTorch plugin; predicts ``probability`` (FLOAT).

    Defaults chosen by measurement against River (``python -m bench --only online``):
    ``batch_size=1`` (a step per sample: the loop matches River's prequential accuracy; a
    larger batch trains more samples per second but learns each row later), ``alpha=0.3``,
    ``beta=3.0``. ``prior``: the probability an untrained model predicts (its bias is
    ``logit(prior)``, its weights 0): ``Pipeline.untrained`` serves it until a version has
    learned, and ``fit``/``fit_stream`` start from it without ``init_from``.

    Disk stays bounded on an endless stream: ``model_dir`` keeps the newest
    ``keep_versions=10`` versions and ``keep_checkpoints=3`` checkpoints, and each pipeline
    version it publishes prunes the pipeline directory (``publish_model``). Each node logs
    one progress line every ``progress_every_s=5`` seconds; each version's lines are DEBUG.
    Other keywords are ``TorchConfig`` fields."""

    kind = "FTRLLogisticRegression"

    def __init__(self, features: Sequence[str] | None = None, label: str | None = None, *,
                 model_dir: str | os.PathLike[str], alpha: float = 0.3, beta: float = 3.0,
                 l1: float = 0.0, l2: float = 0.0, batch_size: int = 1, epochs: int = 1,
                 prior: float = 0.5, init_from: str | os.PathLike[str] | None = None,
                 export_every_steps: int | None = None, export_every_s: float | None = None,
                 **config: Any) -> None:
        from flink_dl.online.ftrl import FTRL
        from flink_dl.pytorch import TorchConfig

        self.settings = {"alpha": alpha, "beta": beta, "l1": l1, "l2": l2,
                         "batch_size": batch_size, "prior": prior}
        _check_settings(FTRL, self.settings)
        config.setdefault("keep_versions", FTRL_KEEP_VERSIONS)
        torch_config = TorchConfig(
            world_size=1, entry=ENTRY, epochs=epochs, model_dir=str(model_dir),
            init_from=None if init_from is None else str(init_from),
            properties={k: str(v) for k, v in self.settings.items()},
            export_every_steps=export_every_steps, export_every_s=export_every_s,
            env={"OMP_NUM_THREADS": "1", **config.pop("env", {})}, **config)
        super().__init__(torch_config, features, label,
                         outputs={"probability": pa.float32()}, postprocess=probability)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), **self.settings}

    def publish_untrained(self, features: Sequence[str]) -> ModelVersion:
        """Zero weights and the bias ``logit(prior)``: every row gets ``prior`` until the
        first trained version (``Pipeline.untrained``)."""
        from flink_dl.online.ftrl import initial_model
        from flink_dl.pytorch.module_files import publish_module

        return publish_module(self.config.model_dir, initial_model(len(features),
                                                                   self.settings["prior"]),
                              keep_versions=self.config.keep_versions,
                              metrics={"samples": 0, "untrained": True})

    def fit_stream(self, samples: Table, pipeline_dir: str | os.PathLike[str] | None = None,
                   *, exactly_once: bool = False) -> DataStream:
        """Keep learning from the unbounded ``samples`` (in their job; run it with
        ``flink_dl.execute``). Returns the training events (one row per version).

        A version is published whenever the learner has learned every sample that reached
        it, and at least every ``export_every_s`` (default ``STREAM_EXPORT_EVERY_S``) while
        samples keep coming; ``export_every_steps=`` counts steps instead.

        A checkpoint is written with each version, and a restart resumes from the newest.
        ``exactly_once=True``: every sample reaches the optimizer exactly once across
        restarts (needs Flink checkpointing and a checkpointed source; see
        ``TorchConfig.exactly_once``). Versions carry ``step`` and ``metrics["samples"]``
        counted from the job's start (kept in the checkpoints). When the input ends (a
        bounded stream, or ``flink_dl.stop_with_drain``) a final version is published."""
        import dataclasses

        from flink_dl.flink.feed import arrow_schema_of
        from flink_dl.pytorch.train import train

        export_every_s = self.config.export_every_s
        if self.config.export_every_steps is None and export_every_s is None:
            export_every_s = STREAM_EXPORT_EVERY_S
        schema = arrow_schema_of(samples)
        features = expand_features(self.kind, schema, self.features, self.label)
        properties = dict(self.config.properties, streaming="1")
        if pipeline_dir is not None:
            properties["pipeline_dir"] = str(pipeline_dir)
        config = dataclasses.replace(self.config, features=features, label=self.label,
                                     properties=properties, exactly_once=exactly_once,
                                     export_every_s=export_every_s,
                                     input_bundle_ms=self.config.input_bundle_ms
                                     or STREAM_INPUT_BUNDLE_MS)
        env = env_of(samples)
        shorter_buffer_timeout(env)
        return train(env, samples, config)


#: How long a sample may wait in the feed's Python bundle in ``fit_stream`` (ms), unless
#: ``input_bundle_ms=`` says otherwise (Flink's 1 s bundle held samples back up to a
#: second at the rates of an online loop).
STREAM_INPUT_BUNDLE_MS = 50
#: The network buffer timeout (ms) ``fit_stream`` gives a job still at Flink's default.
STREAM_BUFFER_TIMEOUT_MS = 10
_FLINK_BUFFER_TIMEOUT_MS = 100


def shorter_buffer_timeout(env: Any) -> None:
    """Flush the job's network buffers every ``STREAM_BUFFER_TIMEOUT_MS`` when it has
    Flink's default of 100 ms: a served row and the sample joined from it cross several
    network exchanges before the learner, and each held them up to 100 ms (the loop's
    served version was ~0.1 s staler in ``bench --only online``). A job-wide setting; set
    ``env.set_buffer_timeout(...)`` to another value to keep yours."""
    if env.get_buffer_timeout() == _FLINK_BUFFER_TIMEOUT_MS:
        env.set_buffer_timeout(STREAM_BUFFER_TIMEOUT_MS)


def _check_settings(ftrl: type, settings: dict[str, Any]) -> None:
    import torch

    ftrl([torch.zeros(1, requires_grad=True)],
         **{k: v for k, v in settings.items() if k not in ("batch_size", "prior")})
    prior = settings["prior"]
    if isinstance(prior, bool) or not isinstance(prior, int | float) or not 0 < prior < 1:
        raise ConfigError(f"FTRLLogisticRegression: prior must be a probability strictly "
                          f"between 0 and 1, got {prior!r}")
    size = settings["batch_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"FTRLLogisticRegression: batch_size must be an integer >= 1, got "
                          f"{size!r}")
