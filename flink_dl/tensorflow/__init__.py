"""TensorFlow on Flink: worker / ps / chief clusters (``train``, ``predict_on_cluster``),
in-operator inference from a SavedModel or Keras file (``predict``) and inference by a
cluster of model servers (``predict_distributed``), on the plugin contract of
``flink_dl.training``.

Attributes load lazily, like the top-level package (TensorFlow is imported only where a
module needs it).
"""

from __future__ import annotations

from flink_dl.lazy import lazy_exports

_EXPORTS = {
    "TFConfig": "flink_dl.tensorflow.config",
    "TFOptions": "flink_dl.tensorflow.config",
    "TFEstimator": "flink_dl.tensorflow.learner",
    "TFModel": "flink_dl.tensorflow.learner",
    "TFContext": "flink_dl.tensorflow.context",
    "EVENTS_SCHEMA": "flink_dl.models.events",
    "train": "flink_dl.tensorflow.train",
    "predict_on_cluster": "flink_dl.tensorflow.train",
    "predict_distributed": "flink_dl.tensorflow.handler",
    "TFModelHandler": "flink_dl.tensorflow.handler",
    "predict": "flink_dl.tensorflow.handler",
    "build_tf_config": "flink_dl.tensorflow.tf_config",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("flink_dl.tensorflow", _EXPORTS, globals())
