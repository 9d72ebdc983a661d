"""Flink metrics of ``monitor``: the model version in use, windowed quality and drift.

``monitor(..., metrics=True)`` passes its rows (one per window and version) through
``QualityGauges``, which registers gauges under the operator's metric group ``flink_dl``:
``model_version`` (the newest version seen serving), ``window_rows``, and quality and drift
in parts per million (Flink's Python gauges carry integers): ``accuracy_ppm``,
``log_loss_ppm``, ``auc_ppm``, ``drift_psi_ppm`` and ``drift_ks_ppm`` (the largest over the
monitored features). Every metrics reporter and the REST API see them.
"""

from __future__ import annotations

from typing import Any

from pyflink.table.udf import FunctionContext, ScalarFunction

from flink_dl.startup import worker_tuning

#: The gauges, in the order ``QualityGauges.eval`` takes their values.
GAUGES = ("model_version", "window_rows", "accuracy_ppm", "log_loss_ppm", "auc_ppm",
          "drift_psi_ppm", "drift_ks_ppm")
METRIC_GROUP = "flink_dl"


def ppm(value: float | None) -> int | None:
    """``value`` in parts per million (``None`` stays ``None``)."""
    return None if value is None else round(float(value) * 1_000_000)


class QualityGauges(ScalarFunction):
    """Scalar UDF: records one monitor row in the gauges, returns its version unchanged."""

    def open(self, function_context: FunctionContext) -> None:
        worker_tuning.apply()
        self.values = dict.fromkeys(GAUGES, 0)
        group = function_context.get_metric_group().add_group(METRIC_GROUP)
        for name in GAUGES:
            group.gauge(name, self._reader(name))

    def is_deterministic(self) -> bool:
        return False  # a side effect per row: never folded or deduplicated by the planner

    def _reader(self, name: str) -> Any:
        return lambda: int(self.values[name])

    def eval(self, version: int | None, rows: int | None, accuracy: float | None,
             log_loss: float | None, auc: float | None, psi: float | None,
             ks: float | None) -> int | None:
        if version is not None:
            self.values["model_version"] = max(self.values["model_version"], int(version))
        if rows is not None:
            self.values["window_rows"] = int(rows)
        for name, value in (("accuracy_ppm", accuracy), ("log_loss_ppm", log_loss),
                            ("auc_ppm", auc), ("drift_psi_ppm", psi), ("drift_ks_ppm", ks)):
            scaled = ppm(value)
            if scaled is not None:
                self.values[name] = scaled
        return version
