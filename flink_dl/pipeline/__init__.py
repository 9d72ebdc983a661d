"""ML pipelines: feature logic defined once, fitted on batch data, saved with the model,
applied identically to bounded and unbounded Tables (Flink ML's Estimator/Model/Pipeline,
for Flink 2 and deep learning).

Attributes load lazily, like the top-level package (Flink workers import concurrently).
"""

from __future__ import annotations

from flink_dl.lazy import lazy_exports

_EXPORTS = {
    "Estimator": "flink_dl.pipeline.api",
    "Model": "flink_dl.pipeline.api",
    "Stage": "flink_dl.pipeline.api",
    "Transformer": "flink_dl.pipeline.api",
    "Pipeline": "flink_dl.pipeline.pipeline",
    "PipelineModel": "flink_dl.pipeline.pipeline",
    "publish_model": "flink_dl.pipeline.pipeline",
    "Bucketizer": "flink_dl.pipeline.stages",
    "Imputer": "flink_dl.pipeline.stages",
    "ImputerModel": "flink_dl.pipeline.stages",
    "MinMaxScaler": "flink_dl.pipeline.stages",
    "MinMaxScalerModel": "flink_dl.pipeline.stages",
    "OneHotEncoder": "flink_dl.pipeline.stages",
    "OneHotEncoderModel": "flink_dl.pipeline.stages",
    "QuantileDiscretizer": "flink_dl.pipeline.stages",
    "SQLTransform": "flink_dl.pipeline.stages",
    "StandardScaler": "flink_dl.pipeline.stages",
    "StandardScalerModel": "flink_dl.pipeline.stages",
    "StringIndexer": "flink_dl.pipeline.stages",
    "StringIndexerModel": "flink_dl.pipeline.stages",
    "TorchEstimator": "flink_dl.pytorch.learner",
    "TorchModel": "flink_dl.pytorch.learner",
    "TFEstimator": "flink_dl.tensorflow.learner",
    "TFModel": "flink_dl.tensorflow.learner",
    "LearnerEstimator": "flink_dl.pipeline.learners",
    "LearnerModel": "flink_dl.pipeline.learners",
    "register": "flink_dl.pipeline.api",
    "stage_class": "flink_dl.pipeline.api",
    "predict": "flink_dl.pipeline.serving",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("flink_dl.pipeline", _EXPORTS, globals())
