"""The built-in pipeline stages (importing this registers them for loading)."""

from flink_dl.pipeline.stages.buckets import Bucketizer, QuantileDiscretizer
from flink_dl.pipeline.stages.categorical import (
    OneHotEncoder,
    OneHotEncoderModel,
    StringIndexer,
    StringIndexerModel,
)
from flink_dl.pipeline.stages.imputer import Imputer, ImputerModel
from flink_dl.pipeline.stages.scalers import (
    MinMaxScaler,
    MinMaxScalerModel,
    StandardScaler,
    StandardScalerModel,
)
from flink_dl.pipeline.stages.sql_transform import SQLTransform

__all__ = [
    "Bucketizer", "Imputer", "ImputerModel", "MinMaxScaler", "MinMaxScalerModel",
    "OneHotEncoder", "OneHotEncoderModel", "QuantileDiscretizer", "SQLTransform",
    "StandardScaler", "StandardScalerModel", "StringIndexer", "StringIndexerModel",
]
