"""Held-out evaluation and the quality gate.

Metric keys are the contract's: ``r2``, ``rmse``, ``mae`` (regression); ``accuracy``,
``f1Macro``, ``rocAuc`` (classification; rocAuc only where defined: binary from the positive
class's probability, multiclass one-vs-rest). The confusion matrix is a JSON artifact, not a
metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelship.api.v1alpha1 import LOWER_IS_BETTER, QualityGate
from modelship.training.errors import InvalidInput


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def split(frame: Any, features: list[str], target: str, task: str, test_size: float, seed: int) -> tuple[Any, Any, Any, Any]:
    """Train/test split, stratified for classification; InvalidInput when it cannot be done."""
    from sklearn.model_selection import train_test_split

    X, y = frame[features], frame[target]
    try:
        return train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y if task == "classification" else None)
    except ValueError as error:
        raise InvalidInput(f"dataset: cannot hold out testSize {test_size:g} of {len(frame)} rows ({str(error).splitlines()[0]})") from None


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    return {
        "r2": float(r2_score(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
    }


def classification_metrics(y_true: Any, y_pred: Any, proba: Any | None, classes: list[Any]) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1Macro": float(f1_score(y_true, y_pred, average="macro", labels=classes, zero_division=0)),
    }
    y = np.asarray(y_true)
    if proba is not None and len(np.unique(y)) > 1:
        try:
            if len(classes) == 2:
                metrics["rocAuc"] = float(roc_auc_score(y == classes[1], np.asarray(proba)[:, 1]))
            elif len(np.unique(y)) == len(classes):
                metrics["rocAuc"] = float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        except ValueError:
            pass
    return metrics


def confusion(y_true: Any, y_pred: Any, classes: list[Any]) -> dict[str, Any]:
    """``{"labels": [...], "matrix": [[...]]}``: rows are true labels, columns predicted."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=classes)
    return {"labels": [_plain(c) for c in classes], "matrix": matrix.tolist()}


def evaluate(pipeline: Any, X_test: Any, y_test: Any, task: str) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Contract metrics on the held-out split, and the confusion matrix for classifiers."""
    predictions = pipeline.predict(X_test)
    if task == "regression":
        return regression_metrics(y_test, predictions), None
    classes = list(pipeline.classes_)
    proba = pipeline.predict_proba(X_test) if hasattr(pipeline, "predict_proba") else None
    return classification_metrics(y_test, predictions, proba, classes), confusion(y_test, predictions, classes)


def better(metric: str, value: float, other: float) -> bool:
    """Strictly better: smaller for rmse and mae, greater otherwise."""
    return value < other if metric in LOWER_IS_BETTER else value > other


def judge(gate: QualityGate | None, metrics: dict[str, float], champion: float | None = None, champion_version: str | None = None) -> Verdict:
    """The gate's verdict with a one-line reason.

    ``champion`` is the champion's value of the gate metric (None: no champion, or no value).
    With ``mustBeatChampion`` the new version must be STRICTLY better than the champion.
    """
    if gate is None:
        return Verdict(True, "no quality gate configured")
    metric = gate.metric
    value = metrics.get(metric)
    if value is None:
        return Verdict(False, f"{metric} could not be computed for this model, so the gate cannot pass")
    relation = "≤" if metric in LOWER_IS_BETTER else "≥"
    if not gate.passes(value):
        negated = ">" if metric in LOWER_IS_BETTER else "<"
        return Verdict(False, f"{metric} {value:.4f} {negated} threshold {gate.threshold:g}")
    reason = f"{metric} {value:.4f} {relation} threshold {gate.threshold:g}"
    if not gate.must_beat_champion:
        return Verdict(True, reason)
    if champion is None:
        return Verdict(True, f"{reason}; no champion to beat")
    name = f"champion v{champion_version}" if champion_version else "champion"
    if better(metric, value, champion):
        return Verdict(True, f"{reason}; beats {name} ({champion:.4f})")
    return Verdict(False, f"{metric} {value:.4f} does not beat {name} ({champion:.4f})")


def _plain(value: Any) -> Any:
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value
