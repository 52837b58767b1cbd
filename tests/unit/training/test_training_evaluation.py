"""Metrics and the quality gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelship.api.v1alpha1 import QualityGate
from modelship.training.errors import InvalidInput
from modelship.training.evaluation import classification_metrics, confusion, judge, regression_metrics, split


def gate(metric, threshold, champion=False):
    return QualityGate.model_validate({"metric": metric, "threshold": threshold, "mustBeatChampion": champion})


@pytest.mark.parametrize(
    ("the_gate", "metrics", "champion", "passed", "reason"),
    [
        (None, {"r2": 0.1}, None, True, "no quality gate configured"),
        (gate("r2", 0.8), {"r2": 0.85}, None, True, "r2 0.8500 ≥ threshold 0.8"),
        (gate("r2", 0.8), {"r2": 0.75}, None, False, "r2 0.7500 < threshold 0.8"),
        (gate("rmse", 50000), {"rmse": 48000.0}, None, True, "rmse 48000.0000 ≤ threshold 50000"),
        (gate("rmse", 50000), {"rmse": 52000.0}, None, False, "rmse 52000.0000 > threshold 50000"),
        (gate("accuracy", 0.9, True), {"accuracy": 0.93}, None, True, "accuracy 0.9300 ≥ threshold 0.9; no champion to beat"),
        (gate("accuracy", 0.9, True), {"accuracy": 0.93}, 0.92, True, "accuracy 0.9300 ≥ threshold 0.9; beats champion v4 (0.9200)"),
        (gate("accuracy", 0.9, True), {"accuracy": 0.93}, 0.93, False, "accuracy 0.9300 does not beat champion v4 (0.9300)"),
        (gate("mae", 10, True), {"mae": 8.0}, 9.0, True, "mae 8.0000 ≤ threshold 10; beats champion v4 (9.0000)"),
        (gate("mae", 10, True), {"mae": 8.0}, 7.0, False, "mae 8.0000 does not beat champion v4 (7.0000)"),
        (gate("accuracy", 0.5, False), {"accuracy": 0.6}, 0.9, True, "accuracy 0.6000 ≥ threshold 0.5"),
        (gate("rocAuc", 0.8), {"accuracy": 0.9}, None, False, "rocAuc could not be computed for this model, so the gate cannot pass"),
    ],
)
def test_judge(the_gate, metrics, champion, passed, reason):
    verdict = judge(the_gate, metrics, champion, "4" if champion is not None else None)
    assert (verdict.passed, verdict.reason) == (passed, reason)


def test_regression_metrics_keys_are_the_contract_names():
    metrics = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert set(metrics) == {"r2", "rmse", "mae"}
    assert metrics["mae"] == pytest.approx(1 / 3) and metrics["rmse"] == pytest.approx(np.sqrt(1 / 3))


def test_classification_metrics_binary_and_multiclass():
    binary = classification_metrics(["a", "b", "b", "a"], ["a", "b", "a", "a"], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]), ["a", "b"])
    assert binary["accuracy"] == 0.75 and binary["rocAuc"] == 1.0 and "f1Macro" in binary
    proba = np.eye(3)[[0, 1, 2, 0]]
    multi = classification_metrics(["x", "y", "z", "x"], ["x", "y", "z", "x"], proba, ["x", "y", "z"])
    assert multi == {"accuracy": 1.0, "f1Macro": 1.0, "rocAuc": 1.0}
    assert "rocAuc" not in classification_metrics(["a", "a"], ["a", "b"], np.array([[0.9, 0.1], [0.4, 0.6]]), ["a", "b"])
    assert "rocAuc" not in classification_metrics(["a", "b"], ["a", "b"], None, ["a", "b"])


def test_confusion_matrix_rows_are_true_labels():
    assert confusion(["a", "b", "b"], ["a", "a", "b"], ["a", "b"]) == {"labels": ["a", "b"], "matrix": [[1, 0], [1, 1]]}


def test_split_is_stratified_and_fails_cleanly():
    df = pd.DataFrame({"x": range(40), "y": ["a"] * 30 + ["b"] * 10})
    _, _, _, y_test = split(df, ["x"], "y", "classification", 0.2, 0)
    assert sorted(y_test.value_counts().to_dict().items()) == [("a", 6), ("b", 2)]
    tiny = pd.DataFrame({"x": range(5), "y": ["a", "a", "a", "a", "b"]})
    with pytest.raises(InvalidInput, match=r"^dataset: cannot hold out testSize 0.2 of 5 rows"):
        split(tiny, ["x"], "y", "classification", 0.2, 0)
