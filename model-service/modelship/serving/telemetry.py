"""The model server's Prometheus metrics (names from :mod:`modelship.monitoring.metrics`).

Created with ``prometheus_client`` on first use, inside the BentoML worker, so they land in the
multiprocess directory the service's ``/metrics`` reads (``PROMETHEUS_MULTIPROC_DIR``, set by
``bentoml serve``), or in the default registry when there is no such directory (tests).
Every series carries ``model``, ``version``, ``variant``; the per-request ones also ``traffic``
(``live``, or ``shadow`` for a gateway's mirrored copy: :mod:`modelship.serving.mirroring`).
"""

from __future__ import annotations

import functools
from typing import Any

from modelship.monitoring import metrics as names

#: Gauges keep the value the live worker set last.
_GAUGE_MODE = "livemostrecent"


@functools.cache
def _families() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    labels = list(names.LABELS)
    per_request = [*labels, names.LABEL_TRAFFIC]
    return {
        "predictions": Counter(names.PREDICTIONS_TOTAL, "Prediction requests by outcome (success, invalid, error) and traffic (live, or shadow: a gateway's mirrored copy).", [*per_request, names.LABEL_OUTCOME, names.LABEL_ENDPOINT]),
        "records": Counter(names.PREDICTED_RECORDS_TOTAL, "Records predicted.", per_request),
        "latency": Histogram(names.PREDICTION_LATENCY_SECONDS, "Prediction request latency in seconds.", [*per_request, names.LABEL_ENDPOINT], buckets=names.LATENCY_BUCKETS),
        "batch": Histogram(names.BATCH_SIZE, "Rows per model call after adaptive batching.", labels, buckets=names.BATCH_SIZE_BUCKETS),
        "value": Histogram(names.PREDICTION_VALUE, "Predicted values (regression).", per_request, buckets=_value_buckets()),
        "klass": Counter(names.PREDICTED_CLASS_TOTAL, "Predicted classes (classification).", [*per_request, names.LABEL_CLASS]),
        "feature_score": Gauge(names.FEATURE_DRIFT_SCORE, "Drift score of each feature in the last evaluation.", [*labels, names.LABEL_FEATURE], multiprocess_mode=_GAUGE_MODE),
        "feature_drifted": Gauge(names.FEATURE_DRIFTED, "1 when the feature drifted in the last evaluation.", [*labels, names.LABEL_FEATURE], multiprocess_mode=_GAUGE_MODE),
        "share": Gauge(names.DRIFTED_FEATURES_SHARE, "Share of drifted features in the last evaluation.", labels, multiprocess_mode=_GAUGE_MODE),
        "detected": Gauge(names.DATA_DRIFT_DETECTED, "1 when the drifted share reached driftShare in the last evaluation.", labels, multiprocess_mode=_GAUGE_MODE),
        "window": Gauge(names.DRIFT_WINDOW_ROWS, "Rows in the drift window.", labels, multiprocess_mode=_GAUGE_MODE),
        "drift_seconds": Histogram(names.DRIFT_EVALUATION_SECONDS, "Seconds one drift evaluation took.", labels, buckets=names.DRIFT_EVALUATION_BUCKETS),
        "drift_runs": Counter(names.DRIFT_EVALUATIONS_TOTAL, "Drift evaluations by outcome.", [*labels, names.LABEL_OUTCOME]),
        "info": Gauge(names.MODEL_INFO, "The served model (always 1).", [*labels, names.LABEL_RUN_ID, names.LABEL_TASK], multiprocess_mode=_GAUGE_MODE),
        "ready": Gauge(names.MODEL_READY, "1 once the model is loaded and serving.", labels, multiprocess_mode=_GAUGE_MODE),
        "labelled": Counter(names.LABELLED_PREDICTIONS_TOTAL, "Predictions that received a ground-truth label, by outcome and true class.", [*labels, names.LABEL_OUTCOME, names.LABEL_CLASS]),
        "abs_error": Histogram(names.PREDICTION_ABSOLUTE_ERROR, "Absolute error of predictions that received their true value.", labels, buckets=_value_buckets()),
        "sq_error": Counter(names.PREDICTION_SQUARED_ERROR_TOTAL, "Sum of squared errors of predictions that received their true value.", labels),
        "quality_threshold": Gauge(names.QUALITY_THRESHOLD, "Live-quality threshold of spec.monitoring.feedback.qualityThreshold.", [*labels, names.LABEL_METRIC], multiprocess_mode=_GAUGE_MODE),
        "quality_min_labels": Gauge(names.QUALITY_MIN_LABELS, "Labelled predictions the quality alert needs in its window.", labels, multiprocess_mode=_GAUGE_MODE),
        "store_written": Counter(names.PREDICTION_STORE_WRITTEN_TOTAL, "Prediction records written to the prediction store.", labels),
        "store_dropped": Counter(names.PREDICTION_STORE_DROPPED_TOTAL, "Prediction records dropped: the store's buffer was full.", labels),
        "store_connected": Gauge(names.PREDICTION_STORE_CONNECTED, "1 while the prediction store is connected to its database.", labels, multiprocess_mode=_GAUGE_MODE),
    }


def _value_buckets() -> tuple[float, ...]:
    # Wide and log-spaced: the target's scale is not known before the model loads.
    return tuple(sorted({sign * m * 10.0**e for e in range(-2, 7) for m in (1, 2.5, 5) for sign in (1,)} | {0.0}))


def exposition() -> tuple[bytes, str]:
    """``/metrics``: every worker's series from the multiprocess directory, else this process's."""
    import os

    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class ServingMetrics:
    """The metric children of one served model, labelled once."""

    def __init__(self, model: str, version: str, variant: str, eager: bool = True) -> None:
        """``eager`` creates every series at 0 now (so ``rate()`` starts from zero); a runtime
        that does not know its version yet (an alias before loading) passes False."""
        f = _families()
        self.labels = {names.LABEL_MODEL: model, names.LABEL_VERSION: version, names.LABEL_VARIANT: variant}
        lv = (model, version, variant)
        self._f = f
        self._lv = lv
        self._outcomes: dict[tuple[str, str, str], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._classes: dict[tuple[str, str], Any] = {}
        self._records: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self._eager = eager
        if eager:
            # Shadow series too: a candidate's first mirrored requests must count in increase().
            for traffic in names.TRAFFIC_KINDS:
                for outcome in names.OUTCOMES:
                    for endpoint in ("predict", "batch"):
                        self._outcome(outcome, endpoint, traffic)
            self._ready = f["ready"].labels(*lv)
            self._ready.set(0)

    def _outcome(self, outcome: str, endpoint: str, traffic: str) -> Any:
        child = self._outcomes.get((outcome, endpoint, traffic))
        if child is None:
            child = self._outcomes[(outcome, endpoint, traffic)] = self._f["predictions"].labels(*self._lv, traffic, outcome, endpoint)
            self._latency.setdefault((endpoint, traffic), self._f["latency"].labels(*self._lv, traffic, endpoint))
        return child

    @functools.cached_property
    def _batch(self) -> Any:
        return self._f["batch"].labels(*self._lv)

    @functools.cached_property
    def _window(self) -> Any:
        return self._f["window"].labels(*self._lv)

    def request(self, outcome: str, endpoint: str, seconds: float, traffic: str = names.TRAFFIC_LIVE) -> None:
        self._outcome(outcome, endpoint, traffic).inc()
        self._latency[(endpoint, traffic)].observe(seconds)

    def predictions(self, values: list[Any], classification: bool, traffic: str = names.TRAFFIC_LIVE) -> None:
        records = self._records.get(traffic)
        if records is None:
            records = self._records[traffic] = self._f["records"].labels(*self._lv, traffic)
        records.inc(len(values))
        if classification:
            for value in values:
                key = (str(value), traffic)
                child = self._classes.get(key)
                if child is None:
                    child = self._classes[key] = self._f["klass"].labels(*self._lv, traffic, key[0])
                child.inc()
        else:
            histogram = self._values.get(traffic)
            if histogram is None:
                histogram = self._values[traffic] = self._f["value"].labels(*self._lv, traffic)
            observe = histogram.observe
            for value in values:
                observe(value)

    def batch(self, rows: int) -> None:
        self._batch.observe(rows)

    def window(self, rows: int) -> None:
        self._window.set(rows)

    def ready(self, ready: bool, run_id: str | None = None, task: str | None = None) -> None:
        self._f["ready"].labels(*self._lv).set(1 if ready else 0)
        if ready:
            self._f["info"].labels(*self._lv, run_id or "", task or "").set(1)

    def drift(self, result: Any, seconds: float) -> None:
        for feature, item in result.features.items():
            self._f["feature_score"].labels(*self._lv, feature).set(item.score)
            self._f["feature_drifted"].labels(*self._lv, feature).set(1 if item.drifted else 0)
        self._f["share"].labels(*self._lv).set(result.drifted_share)
        self._f["detected"].labels(*self._lv).set(1 if result.drift_detected else 0)
        self._f["drift_seconds"].labels(*self._lv).observe(seconds)
        self._f["drift_runs"].labels(*self._lv, "success").inc()

    def drift_failed(self) -> None:
        self._f["drift_runs"].labels(*self._lv, "error").inc()

    # --- prediction store and feedback ------------------------------------------------------

    def store_ready(self, classes: list[str] | None, quality: Any | None) -> None:
        """The store's series at 0 (so ``rate()`` starts from zero) and the quality threshold."""
        f, lv = self._f, self._lv
        f["store_written"].labels(*lv)
        f["store_dropped"].labels(*lv)
        f["store_connected"].labels(*lv)
        if classes is not None:
            for klass in classes:
                for outcome in (names.OUTCOME_CORRECT, names.OUTCOME_INCORRECT):
                    f["labelled"].labels(*lv, outcome, klass)
        else:
            f["abs_error"].labels(*lv)
            f["sq_error"].labels(*lv)
        if quality is not None:
            from modelship.api.v1alpha1 import QualityMetric

            f["quality_threshold"].labels(*lv, QualityMetric(quality.metric).value).set(quality.threshold)
            f["quality_min_labels"].labels(*lv).set(quality.min_labels)

    def store_written(self, rows: int) -> None:
        self._f["store_written"].labels(*self._lv).inc(rows)

    def store_dropped(self, rows: int) -> None:
        self._f["store_dropped"].labels(*self._lv).inc(rows)

    def store_connected(self, connected: bool) -> None:
        self._f["store_connected"].labels(*self._lv).set(1 if connected else 0)

    def labelled(self, version: str, variant: str, correct: bool, klass: str) -> None:
        """One classification prediction got its true class (labels of the prediction's version)."""
        outcome = names.OUTCOME_CORRECT if correct else names.OUTCOME_INCORRECT
        self._f["labelled"].labels(self._lv[0], version, variant, outcome, klass).inc()

    def error(self, version: str, variant: str, absolute_error: float) -> None:
        """One regression prediction got its true value."""
        self._f["abs_error"].labels(self._lv[0], version, variant).observe(absolute_error)
        self._f["sq_error"].labels(self._lv[0], version, variant).inc(absolute_error * absolute_error)
