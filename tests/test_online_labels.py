"""``flink_dl.online.join_labels``: predictions meet their delayed labels in event time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from flink_dl.errors import ConfigError, FeatureTypeError, MissingColumnError
from flink_dl.online import join_labels

PREDICTIONS = [  # user, event time, prediction, model version
    (1, "2026-01-01 00:00:00", 0.9, 1),   # label 5 s later: joined
    (2, "2026-01-01 00:00:01", 0.2, 1),   # label 30 s later: past the bound
    (3, "2026-01-01 00:00:02", 0.7, 2),   # no label at all
    (4, "2026-01-01 00:00:03", 0.4, 2),   # label 1 s *before* the prediction: not its label
]
LABELS = [(1, "2026-01-01 00:00:05", 1), (2, "2026-01-01 00:00:31", 0),
          (4, "2026-01-01 00:00:02", 1)]


def table(t_env, name: str, directory: Path, columns: str, rows: list[tuple]) -> object:
    directory.mkdir()
    (directory / "part-0.csv").write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name} ({columns}, WATERMARK FOR ts AS ts) "
                      f"WITH ('connector' = 'filesystem', 'path' = '{directory}', "
                      "'format' = 'csv')")
    return t_env.from_path(name)


@pytest.fixture
def tables(tmp_path):
    t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment())
    predictions = table(t_env, "predictions", tmp_path / "p",
                        "user_id INT, ts TIMESTAMP(3), p DOUBLE, model_version INT", PREDICTIONS)
    labels = table(t_env, "labels", tmp_path / "l", "user_id INT, ts TIMESTAMP(3), clicked INT",
                   LABELS)
    return predictions, labels


def test_labels_within_the_bound_join_late_and_missing_ones_follow_the_policy(tables) -> None:
    predictions, labels = tables
    dropped = join_labels(predictions, labels, key="user_id", within=10).to_pandas()
    assert dropped[["user_id", "p", "model_version", "clicked"]].values.tolist() == [
        [1, 0.9, 1, 1]]
    assert str(dropped["label_time"].iloc[0]) == "2026-01-01 00:00:05"
    emitted = join_labels(predictions, labels, key="user_id", within=10,
                          unlabelled="emit").to_pandas().sort_values("user_id")
    assert emitted["labelled"].tolist() == [True, False, False, False]
    assert emitted["clicked"].isna().tolist() == [False, True, True, True]
    assert emitted.columns.tolist() == ["user_id", "ts", "p", "model_version", "clicked",
                                        "label_time", "labelled"]


def test_join_labels_checks_its_arguments_at_build_time(tables) -> None:
    predictions, labels = tables
    with pytest.raises(MissingColumnError, match=r"key column\(s\) \['uid'\] are not in the "
                                                 "predictions table"):
        join_labels(predictions, labels, key="uid", within=10)
    with pytest.raises(ConfigError, match="within must be a positive duration"):
        join_labels(predictions, labels, key="user_id", within=0)
    with pytest.raises(ConfigError, match="unlabelled must be one of"):
        join_labels(predictions, labels, key="user_id", within=1, unlabelled="keep")
    plain = predictions.select(predictions.user_id, predictions.p)
    # the keyword the message suggests is join_labels' own (it said predictions_time=)
    with pytest.raises(ConfigError, match=r"exactly one event-time attribute.*pass "
                                          r"prediction_time=\.\.\. or declare one"):
        join_labels(plain, labels, key="user_id", within=1)
    with pytest.raises(ConfigError, match=r"pass label_time=\.\.\. or declare one"):
        join_labels(predictions, labels.select(labels.user_id, labels.clicked),
                    key="user_id", within=1)


def test_join_labels_checks_the_key_types_at_build_time(tables, tmp_path) -> None:
    """A STRING key against an INT one failed only in Flink's planner, with a
    TableException naming neither the key nor join_labels; a wider integer joins."""
    predictions, _ = tables
    t_env = predictions._t_env
    text = table(t_env, "text_labels", tmp_path / "text", "user_id STRING, ts TIMESTAMP(3), "
                 "clicked INT", LABELS)
    with pytest.raises(FeatureTypeError, match=r"join_labels: key 'user_id' is INT in the "
                                               r"predictions and STRING in the labels"):
        join_labels(predictions, text, key="user_id", within=10)
    wide = table(t_env, "wide_labels", tmp_path / "wide", "user_id BIGINT, ts TIMESTAMP(3), "
                 "clicked INT", LABELS)
    joined = join_labels(predictions, wide, key="user_id", within=10).to_pandas()
    assert joined[["user_id", "clicked"]].values.tolist() == [[1, 1]]
