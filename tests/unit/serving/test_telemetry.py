"""The serving metrics: names from the monitoring module, the model/version/variant labels on every series."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, generate_latest

from modelship.monitoring import metrics as names
from modelship.monitoring.drift import DriftResult, FeatureDrift
from modelship.serving.telemetry import ServingMetrics


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_series_and_labels() -> None:
    m = ServingMetrics("telemetry-model", "7", "blue")
    base = {"model": "telemetry-model", "version": "7", "variant": "blue"}
    live = {**base, "traffic": "live"}  # the per-request series
    assert _value(names.PREDICTIONS_TOTAL, outcome="error", endpoint="batch", **live) == 0
    m.request(names.OUTCOME_SUCCESS, "predict", 0.002)
    m.request(names.OUTCOME_INVALID, "predict", 0.001)
    m.predictions(["Extrovert", "Introvert", "Extrovert"], classification=True)
    m.predictions([1.5, 250000.0], classification=False)
    m.batch(3)
    m.window(5)
    m.ready(True, run_id="abc", task="classification")
    m.drift(DriftResult({"a": FeatureDrift("a", "psi", 0.4, True), "b": FeatureDrift("b", "psi", 0.01, False)}, 0.5, True, 10), 0.25)
    assert _value(names.PREDICTIONS_TOTAL, outcome="success", endpoint="predict", **live) == 1
    assert _value(names.PREDICTIONS_TOTAL, outcome="invalid", endpoint="predict", **live) == 1
    assert _value(names.PREDICTED_CLASS_TOTAL, **{"class": "Extrovert"}, **live) == 2
    assert _value(names.PREDICTION_VALUE + "_count", **live) == 2
    assert _value(names.PREDICTED_RECORDS_TOTAL, **live) == 5
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


def test_shadow_copies_are_counted_apart_from_user_requests() -> None:
    m = ServingMetrics("shadow-model", "3", "canary")
    base = {"model": "shadow-model", "version": "3", "variant": "canary"}
    # Both kinds exist at 0 from the start, so a candidate's first mirrored request counts in increase().
    assert _value(names.PREDICTIONS_TOTAL, traffic="shadow", outcome="error", endpoint="predict", **base) == 0
    m.request(names.OUTCOME_SUCCESS, "predict", 0.002)
    m.request(names.OUTCOME_SUCCESS, "predict", 0.003, traffic=names.TRAFFIC_SHADOW)
    m.request(names.OUTCOME_ERROR, "predict", 0.004, traffic=names.TRAFFIC_SHADOW)
    m.predictions([1.0, 2.0], classification=False, traffic=names.TRAFFIC_SHADOW)
    m.predictions(["a"], classification=True)
    assert _value(names.PREDICTIONS_TOTAL, traffic="live", outcome="success", endpoint="predict", **base) == 1
    assert _value(names.PREDICTIONS_TOTAL, traffic="shadow", outcome="success", endpoint="predict", **base) == 1
    assert _value(names.PREDICTIONS_TOTAL, traffic="live", outcome="error", endpoint="predict", **base) == 0
    assert _value(names.PREDICTIONS_TOTAL, traffic="shadow", outcome="error", endpoint="predict", **base) == 1
    assert _value(names.PREDICTION_LATENCY_SECONDS + "_count", traffic="shadow", endpoint="predict", **base) == 2
    assert _value(names.PREDICTION_VALUE + "_count", traffic="shadow", **base) == 2
    assert _value(names.PREDICTION_VALUE + "_count", traffic="live", **base) is None
    assert _value(names.PREDICTED_CLASS_TOTAL, traffic="live", **{"class": "a"}, **base) == 1
    assert _value(names.PREDICTED_RECORDS_TOTAL, traffic="shadow", **base) == 2


@pytest.mark.parametrize(
    "host, kind",
    [
        (None, "live"),
        ("", "live"),
        ("housing.example.com", "live"),
        ("housing.example.com:8080", "live"),
        ("housing-shadow.example.com", "live"),  # a name that merely contains the word
        ("housing.example.com-shadow", "shadow"),  # what Envoy sends for a Host without a port
        ("housing.example.com-shadow:8080", "shadow"),  # Envoy puts the suffix before the port
        ("housing.example.com:8080-shadow", "shadow"),  # a proxy that appends to the whole value
        ("10.0.0.7-shadow:3000", "shadow"),
        ("[fd00::7]:3000", "live"),
        ("HOUSING-SHADOW", "shadow"),
    ],
)
def test_the_host_header_tells_a_mirrored_copy(host: str | None, kind: str) -> None:
    from modelship.serving.mirroring import traffic_kind

    assert traffic_kind(host) == kind


def test_host_name_drops_the_port() -> None:
    from modelship.serving.mirroring import host_name

    assert [host_name(h) for h in ("a:80", "a", "[::1]:80", "[::1]", "a:b")] == ["a", "a", "[::1]", "[::1]", "a:b"]


def test_label_names_are_one_tuple() -> None:
    assert names.LABELS == ("model", "version", "variant")
    assert all(value.startswith("modelship_") for key, value in vars(names).items() if key.isupper() and isinstance(value, str) and key not in {"LABEL_MODEL", "LABEL_VERSION", "LABEL_VARIANT", "LABEL_OUTCOME", "LABEL_ENDPOINT", "LABEL_CLASS", "LABEL_FEATURE", "LABEL_RUN_ID", "LABEL_TASK", "LABEL_METRIC", "QUALITY_WINDOW", "LABEL_TRAFFIC", "LABEL_TRIGGER", "LABEL_TRAINING_JOB", "LABEL_PREVIOUS_VERSION", "LABEL_REASON", "LABEL_CHAMPION_VERSION"} and not key.startswith(("OUTCOME", "RECORD_", "TRAFFIC_")) and not key.endswith("_MATCHER"))
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
