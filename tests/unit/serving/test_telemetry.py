"""The serving metrics: names from the monitoring module, the model/version/variant labels on every series."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from modelship.monitoring import metrics as names
from modelship.monitoring.drift import DriftResult, FeatureDrift
from modelship.serving.telemetry import ServingMetrics


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_series_and_labels() -> None:
    m = ServingMetrics("telemetry-model", "7", "blue")
    base = {"model": "telemetry-model", "version": "7", "variant": "blue"}
    assert _value(names.PREDICTIONS_TOTAL, outcome="error", endpoint="batch", **base) == 0
    m.request(names.OUTCOME_SUCCESS, "predict", 0.002)
    m.request(names.OUTCOME_INVALID, "predict", 0.001)
    m.predictions(["Extrovert", "Introvert", "Extrovert"], classification=True)
    m.predictions([1.5, 250000.0], classification=False)
    m.batch(3)
    m.window(5)
    m.ready(True, run_id="abc", task="classification")
    m.drift(DriftResult({"a": FeatureDrift("a", "psi", 0.4, True), "b": FeatureDrift("b", "psi", 0.01, False)}, 0.5, True, 10), 0.25)
    assert _value(names.PREDICTIONS_TOTAL, outcome="success", endpoint="predict", **base) == 1
    assert _value(names.PREDICTIONS_TOTAL, outcome="invalid", endpoint="predict", **base) == 1
    assert _value(names.PREDICTED_CLASS_TOTAL, **{"class": "Extrovert"}, **base) == 2
    assert _value(names.PREDICTION_VALUE + "_count", **base) == 2
    assert _value(names.PREDICTED_RECORDS_TOTAL, **base) == 5
    assert _value(names.BATCH_SIZE + "_sum", **base) == 3
    assert _value(names.DRIFT_WINDOW_ROWS, **base) == 5
    assert _value(names.MODEL_READY, **base) == 1
    assert _value(names.MODEL_INFO, run_id="abc", task="classification", **base) == 1
    assert _value(names.FEATURE_DRIFT_SCORE, feature="a", **base) == 0.4
    assert _value(names.FEATURE_DRIFTED, feature="b", **base) == 0
    assert _value(names.DRIFTED_FEATURES_SHARE, **base) == 0.5
    assert _value(names.DATA_DRIFT_DETECTED, **base) == 1
    assert _value(names.DRIFT_EVALUATION_SECONDS + "_count", **base) == 1
    for line in generate_latest().decode().splitlines():
        if 'model="telemetry-model"' in line:
            assert 'version="7"' in line and 'variant="blue"' in line


def test_label_names_are_one_tuple() -> None:
    assert names.LABELS == ("model", "version", "variant")
    assert all(value.startswith("modelship_") for key, value in vars(names).items() if key.isupper() and isinstance(value, str) and key not in {"LABEL_MODEL", "LABEL_VERSION", "LABEL_VARIANT", "LABEL_OUTCOME", "LABEL_ENDPOINT", "LABEL_CLASS", "LABEL_FEATURE", "LABEL_RUN_ID", "LABEL_TASK", "LABEL_METRIC", "QUALITY_WINDOW", "LABEL_TRIGGER", "LABEL_TRAINING_JOB", "LABEL_PREVIOUS_VERSION", "LABEL_REASON", "LABEL_CHAMPION_VERSION"} and not key.startswith(("OUTCOME", "RECORD_")))
    # Recording rules follow Prometheus's level:metric:operations naming.
    assert all(value.startswith("modelship:") for key, value in vars(names).items() if key.startswith("RECORD_"))


def test_feedback_and_store_series() -> None:
    from modelship.api.v1alpha1 import QualityThresholdSpec

    m = ServingMetrics("quality-model", "5", "green")
    base = {"model": "quality-model", "version": "5", "variant": "green"}
    m.store_ready(["a", "b"], QualityThresholdSpec(metric="accuracy", threshold=0.8, min_labels=25))
    assert _value(names.LABELLED_PREDICTIONS_TOTAL, outcome="incorrect", **{"class": "b"}, **base) == 0
    assert _value(names.QUALITY_THRESHOLD, metric="accuracy", **base) == 0.8
    assert _value(names.QUALITY_MIN_LABELS, **base) == 25
    m.labelled("4", "blue", True, "a")  # feedback for another version's prediction: its labels
    m.labelled("5", "green", False, "b")
    m.error("5", "green", 3.0)
    m.store_written(7)
    m.store_dropped(2)
    m.store_connected(True)
    assert _value(names.LABELLED_PREDICTIONS_TOTAL, model="quality-model", version="4", variant="blue", outcome="correct", **{"class": "a"}) == 1
    assert _value(names.LABELLED_PREDICTIONS_TOTAL, outcome="incorrect", **{"class": "b"}, **base) == 1
    assert _value(names.PREDICTION_ABSOLUTE_ERROR + "_sum", **base) == 3.0 and _value(names.PREDICTION_SQUARED_ERROR_TOTAL, **base) == 9.0
    assert _value(names.PREDICTION_STORE_WRITTEN_TOTAL, **base) == 7 and _value(names.PREDICTION_STORE_DROPPED_TOTAL, **base) == 2
    assert _value(names.PREDICTION_STORE_CONNECTED, **base) == 1
