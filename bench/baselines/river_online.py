"""River's own online learner on the streams of the ``online`` benchmark, in River's
virtual environment (River 0.26 needs numpy 2; PyFlink's Beam pins numpy below 2).

``python -m bench.baselines.river_online OUT DATA_DIR WARM_ROWS`` writes the streams as CSV
into ``DATA_DIR`` (``<name>.csv``: ``id``, the features, ``y``), so flink-dl's loop reads
the very rows River learned from:

- ``phishing``: River's bundled Phishing set (1,250 real rows, 9 features in [0, 1]);
- ``hyperplane``: River's rotating-hyperplane generator (10 features, 2 of them drifting,
  5 % label noise, seed 42), a gradual concept drift.

For each it scores River's reference pipeline, ``StandardScaler | LogisticRegression``
(River's defaults), prequentially (``progressive_val_score``: predict each row, then learn
it): ``cold`` on every row, and ``warm`` on the rows after the first ``WARM_ROWS``, which
it learns first (as flink-dl's warm loop fits its batch pipeline on them). ``OUT`` gets
``{name: {"features", "rows", "cold", "warm", "rows_per_s"}}``.

Imports only River and the standard library: it runs outside flink-dl's environment.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

#: Rows of the drifting stream.
HYPERPLANE_ROWS = 3000


def streams() -> dict[str, list[tuple[dict[str, float], int]]]:
    """Each stream's rows as (features, label 0/1)."""
    from river import datasets
    from river.datasets import synth

    hyperplane = synth.Hyperplane(seed=42, n_features=10, n_drift_features=2,
                                  mag_change=0.001, noise_percentage=0.05)
    return {
        "phishing": [(dict(x), int(y)) for x, y in datasets.Phishing()],
        "hyperplane": [({f"x{k}": float(v) for k, v in x.items()}, int(y))
                       for x, y in hyperplane.take(HYPERPLANE_ROWS)],
    }


def reference_model() -> Any:
    from river import linear_model, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def prequential(rows: list[tuple[dict[str, float], int]], learn_first: int) -> float:
    """Accuracy of predicting each row after ``learn_first`` before learning it."""
    model = reference_model()
    for x, y in rows[:learn_first]:
        model.learn_one(x, y)
    right = 0
    for x, y in rows[learn_first:]:
        right += int(bool(model.predict_one(x)) == bool(y))
        model.learn_one(x, y)
    return right / (len(rows) - learn_first)


def write_csv(rows: list[tuple[dict[str, float], int]], path: Path) -> list[str]:
    features = list(rows[0][0])
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", *features, "y"])
        for index, (x, y) in enumerate(rows):
            writer.writerow([index, *(float(x[f]) for f in features), y])
    return features


def main(out: Path, data_dir: Path, warm_rows: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    for name, rows in streams().items():
        features = write_csv(rows, data_dir / f"{name}.csv")
        started = time.perf_counter()
        cold = prequential(rows, 0)
        seconds = time.perf_counter() - started
        result[name] = {"features": features, "rows": len(rows), "cold": cold,
                        "warm": prequential(rows, warm_rows),
                        "rows_per_s": len(rows) / seconds}
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
