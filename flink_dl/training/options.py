"""``TrainingOptions``: what a training process needs of its job's config, typed.

``build`` makes one from the validated ``TrainingConfig`` (``training_options``) and it
travels to every node process by value, pickled with the node entry. Each field has the
name of the config field it comes from and is read by attribute where it acts; a plugin
that needs more declares a subclass (``TorchOptions`` adds ``backend``) whose extra fields
are copied from the config fields of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from flink_dl.config import Timeouts

#: Fields ``TrainingConfig.training_options`` derives (the others are copied from the
#: config fields of the same names).
DERIVED_FIELDS = frozenset({"model_dir", "timeouts", "init_from", "features",
                            "input_schema", "events"})


@dataclass(frozen=True, kw_only=True)
class TrainingOptions:
    """A training job's settings as its processes see them (``ctx.options``).

    Attributes are the ``TrainingConfig`` fields of the same name (see there), except:
        init_from: the version directory ``init_from`` resolved to when the job was built.
        input_schema: the input's Arrow schema (IPC bytes), ``None`` without input.
        events: send ``report``/``save_model`` events out of the job (off for clusters
            whose output is the entry's own rows).
    """

    model_dir: str | None = None
    keep_versions: int | None = None
    keep_checkpoints: int = 3
    export_every_steps: int | None = None
    export_every_s: float | None = None
    progress_every_s: float | None = 5.0
    collective_timeout_s: float = 1800.0
    timeouts: Timeouts = field(default_factory=Timeouts)
    init_from: str | None = None
    features: tuple[str, ...] | None = None
    label: str | None = None
    allow_empty_input: bool = False
    exactly_once: bool = False
    input_schema: bytes | None = field(default=None, repr=False)
    events: bool = True

    @property
    def schema(self) -> pa.Schema | None:
        """The input's Arrow schema as known when the job was built, or ``None``."""
        if self.input_schema is None:
            return None
        return pa.ipc.read_schema(pa.py_buffer(self.input_schema))
