"""``predict`` and ``predict_distributed`` for any framework's ``ModelHandler`` class.

Each plugin's ``predict(input, model, features=..., **options)`` and
``predict_distributed(env, input, model, nodes=N, features=..., **options)`` are these two
functions with the plugin's handler class: the same names, arguments and errors in both.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.errors import ConfigError
from flink_dl.inference.api import ModelHandler
from flink_dl.inference.options import PredictOptions

#: Options of ``predict_distributed`` that go to the inference cluster (besides
#: ``PredictOptions``).
CLUSTER_OPTIONS = frozenset({"timeouts", "name", "channel_capacity"})


def handler_from(handler_class: type[ModelHandler], model: str | Path | ModelHandler,
                 features: Sequence[str] | None, options: dict[str, Any]) -> ModelHandler:
    """``model`` if it is a handler (then no ``features``/options), else a new handler."""
    name = handler_class.__name__
    if isinstance(model, ModelHandler):
        if not isinstance(model, handler_class):
            raise ConfigError(f"model is a {type(model).__name__}; this plugin takes a {name}")
        if features is not None or options:
            raise ConfigError(f"pass features and handler options to {name}, not to "
                              "predict, when giving a handler")
        return model
    if _is_pipeline_dir(Path(model)):
        raise ConfigError(f"model {str(model)!r} holds saved pipelines (pipeline.json), not a "
                          f"bare model: serve them with flink_dl.pipeline.predict(input, "
                          f"{str(model)!r}) (features and model together), or "
                          "PipelineModel.load(path).transform(input)")
    if features is None:
        raise ConfigError("predict needs features=[...] (the input columns the model reads)")
    try:
        inspect.signature(handler_class).bind(model, features, **options)
    except TypeError as exc:
        raise ConfigError(f"predict: {exc} ({name} options: "
                          f"{_keywords(handler_class)}; predict options: "
                          f"{sorted(PredictOptions.names())})") from None
    return handler_class(model, features, **options)  # type: ignore[call-arg]


def _keywords(handler_class: type[ModelHandler]) -> list[str]:
    return [p.name for p in inspect.signature(handler_class).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]


def split_options(where: str, options: dict[str, Any]
                  ) -> tuple[PredictOptions, dict[str, Any]]:
    """``predict``'s keyword arguments as its ``PredictOptions`` (built and checked here,
    once; ``options=PredictOptions(...)`` is taken as it is) and the handler's options."""
    rest = dict(options)
    given = rest.pop("options", None)
    mine = {k: rest.pop(k) for k in list(rest) if k in PredictOptions.names()}
    return PredictOptions.parse(where, mine, given), rest


def predict_with(handler_class: type[ModelHandler], input: Table | DataStream,
                 model: str | Path | ModelHandler, features: Sequence[str] | None,
                 options: dict[str, Any]) -> Table | DataStream:
    """In-operator batched inference: ``input`` with the prediction columns appended."""
    from flink_dl.inference.operator import predict as run_predict

    settings, options = split_options("predict", options)
    return run_predict(input, handler_from(handler_class, model, features, options),
                       options=settings)


def predict_distributed_with(handler_class: type[ModelHandler],
                             env: StreamExecutionEnvironment, input: Table | DataStream,
                             model: str | Path | ModelHandler, nodes: int,
                             features: Sequence[str] | None,
                             options: dict[str, Any]) -> DataStream:
    """Inference by an ML cluster of ``nodes`` processes, each predicting its share."""
    from flink_dl.inference.distributed import predict_distributed as run_distributed

    settings, options = split_options("predict_distributed", options)
    cluster = {k: options.pop(k) for k in list(options) if k in CLUSTER_OPTIONS}
    return run_distributed(env, input, handler_from(handler_class, model, features, options),
                           nodes, options=settings, **cluster)


def _is_pipeline_dir(path: Path) -> bool:
    """A ``ModelStore`` of pipeline versions (or one version of it)."""
    from flink_dl.models.store import ModelStore

    if (path / "pipeline.json").is_file():
        return True
    try:
        latest = ModelStore(path).latest_number() if path.is_dir() else None
    except OSError:
        return False
    return latest is not None and (path / f"v{latest:06d}" / "pipeline.json").is_file()
