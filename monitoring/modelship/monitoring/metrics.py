"""Names of the Prometheus metrics a model server exports: the one home that the serving code,
the PrometheusRule alerts, the Grafana dashboards and the operator's canary queries share.

Every metric carries the labels in :data:`LABELS` (``model``, ``version``, ``variant``) so
that two versions served side by side during a canary or an A/B test are told apart.
"""

from __future__ import annotations

#: Labels on every Modelship serving metric.
LABEL_MODEL = "model"
LABEL_VERSION = "version"
LABEL_VARIANT = "variant"
LABELS: tuple[str, ...] = (LABEL_MODEL, LABEL_VERSION, LABEL_VARIANT)
#: The ModelDeployment a scraped series belongs to: the pod label ``modelship.io/deployment``
#: (modelship.api.names.DEPLOYMENT_LABEL) as the chart's PodMonitor copies it onto every series
#: (``podTargetLabels``; the Prometheus Operator turns the characters a label name cannot hold
#: into ``_``). With ``namespace`` it leads an alert back to its resource.
LABEL_DEPLOYMENT = "modelship_io_deployment"

#: Extra label of :data:`PREDICTIONS_TOTAL`: one of :data:`OUTCOMES`.
LABEL_OUTCOME = "outcome"
OUTCOME_SUCCESS = "success"  #: answered with predictions
OUTCOME_INVALID = "invalid"  #: rejected with a 4xx (bad input); the model was not called
OUTCOME_ERROR = "error"  #: failed with a 5xx (model not ready, internal error)
OUTCOMES: tuple[str, ...] = (OUTCOME_SUCCESS, OUTCOME_INVALID, OUTCOME_ERROR)

#: Extra label of the per-request series (:data:`PREDICTIONS_TOTAL`,
#: :data:`PREDICTION_LATENCY_SECONDS`, :data:`PREDICTED_RECORDS_TOTAL`,
#: :data:`PREDICTION_VALUE`, :data:`PREDICTED_CLASS_TOTAL`): whose request it was. A gateway's
#: mirror (Gateway API ``RequestMirror``, the shadow phase of a canary) sends the candidate a
#: copy whose answer nobody sees; it is counted apart so it never passes for user traffic.
LABEL_TRAFFIC = "traffic"
TRAFFIC_LIVE = "live"  #: a request whose answer went back to the caller
TRAFFIC_SHADOW = "shadow"  #: a mirrored copy; its answer is discarded by the gateway
TRAFFIC_KINDS: tuple[str, ...] = (TRAFFIC_LIVE, TRAFFIC_SHADOW)
#: The matcher of user traffic: ``!=`` rather than ``= live``, so the series of a model server
#: from before the label still count as what they were (user traffic).
LIVE_TRAFFIC_MATCHER = f'{LABEL_TRAFFIC}!="{TRAFFIC_SHADOW}"'
SHADOW_TRAFFIC_MATCHER = f'{LABEL_TRAFFIC}="{TRAFFIC_SHADOW}"'

#: Extra label of :data:`PREDICTION_LATENCY_SECONDS`: the endpoint (``predict`` or ``batch``).
LABEL_ENDPOINT = "endpoint"
#: Extra label of :data:`PREDICTED_CLASS_TOTAL`.
LABEL_CLASS = "class"
#: Extra label of :data:`FEATURE_DRIFT_SCORE` and :data:`FEATURE_DRIFTED`.
LABEL_FEATURE = "feature"
#: Extra labels of :data:`MODEL_INFO`.
LABEL_RUN_ID = "run_id"
LABEL_TASK = "task"

#: Counter: requests by outcome (one request may carry many records).
PREDICTIONS_TOTAL = "modelship_predictions_total"
#: Counter: records predicted (rows), successes only.
PREDICTED_RECORDS_TOTAL = "modelship_predicted_records_total"
#: Histogram: request latency in seconds, from the request reaching the service to the answer.
PREDICTION_LATENCY_SECONDS = "modelship_prediction_latency_seconds"
#: Histogram: rows per model call after adaptive batching.
BATCH_SIZE = "modelship_batch_size"
#: Histogram: predicted values (regression).
PREDICTION_VALUE = "modelship_prediction_value"
#: Counter: predicted classes (classification), label ``class``.
PREDICTED_CLASS_TOTAL = "modelship_predicted_class_total"
#: Gauge: drift score of each feature in the last evaluation (label ``feature``); a p-value for
#: ks and chisquare (small means drift), a distance for psi, wasserstein and jensenshannon.
FEATURE_DRIFT_SCORE = "modelship_feature_drift_score"
#: Gauge: 1 when the feature counted as drifted in the last evaluation, else 0.
FEATURE_DRIFTED = "modelship_feature_drifted"
#: Gauge: share of features that drifted in the last evaluation.
DRIFTED_FEATURES_SHARE = "modelship_drifted_features_share"
#: Gauge: 1 when the share of drifted features reached ``driftShare``, else 0. The
#: ``ModelshipDataDrift`` alert fires on it.
DATA_DRIFT_DETECTED = "modelship_data_drift_detected"
#: Gauge: rows in the drift window.
DRIFT_WINDOW_ROWS = "modelship_drift_window_rows"
#: Histogram: seconds one drift evaluation took.
DRIFT_EVALUATION_SECONDS = "modelship_drift_evaluation_seconds"
#: Counter: drift evaluations, by outcome (``success`` or ``error``).
DRIFT_EVALUATIONS_TOTAL = "modelship_drift_evaluations_total"
#: Gauge (always 1): the served model; labels add ``run_id`` and ``task``.
MODEL_INFO = "modelship_model_info"
#: Gauge: 1 once the model is loaded and the server takes predictions, else 0.
MODEL_READY = "modelship_model_ready"

# --- prediction store and ground-truth feedback (spec.monitoring.feedback) ------------------
#: Values of :data:`LABEL_OUTCOME` on :data:`LABELLED_PREDICTIONS_TOTAL`.
OUTCOME_CORRECT = "correct"
OUTCOME_INCORRECT = "incorrect"
#: Extra label of :data:`QUALITY_THRESHOLD`: accuracy, mae or rmse.
LABEL_METRIC = "metric"
#: Counter (classification): predictions that received a ground-truth label, by ``outcome``
#: (correct, incorrect) and ``class`` (the true label). ``version`` and ``variant`` are those of
#: the prediction, whichever server took the feedback.
LABELLED_PREDICTIONS_TOTAL = "modelship_labelled_predictions_total"
#: Histogram (regression): absolute error of predictions that received their true value.
PREDICTION_ABSOLUTE_ERROR = "modelship_prediction_absolute_error"
#: Counter (regression): sum of squared errors of those predictions (RMSE, and with the
#: histogram the variance of the absolute error that a Welch test needs).
PREDICTION_SQUARED_ERROR_TOTAL = "modelship_prediction_squared_error_total"
#: Gauge: the live-quality threshold of ``spec.monitoring.feedback.qualityThreshold``, label
#: ``metric``; the ModelshipQualityDrop alert compares the live metric with it.
QUALITY_THRESHOLD = "modelship_quality_threshold"
#: Gauge: ``qualityThreshold.minLabels``, the labelled predictions the alert needs in its window.
QUALITY_MIN_LABELS = "modelship_quality_min_labels"
#: Counter: prediction records written to the prediction store.
PREDICTION_STORE_WRITTEN_TOTAL = "modelship_prediction_store_written_total"
#: Counter: prediction records dropped because the store's buffer was full (database slow or down).
PREDICTION_STORE_DROPPED_TOTAL = "modelship_prediction_store_dropped_total"
#: Gauge: 1 while the prediction store's writer is connected to the database.
PREDICTION_STORE_CONNECTED = "modelship_prediction_store_connected"

#: Latency buckets (seconds), fine at the low end where a batched XGBoost answer lands.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Batch size buckets (rows).
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
#: Drift evaluation buckets (seconds).
DRIFT_EVALUATION_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# --- recording rules (modelship.monitoring.rules), per namespace, model, version, variant --------
#: Prediction requests per second by outcome, over 1m.
RECORD_REQUEST_RATE = "modelship:predictions:rate1m"
#: Share of requests that failed (outcome ``error``; rejected bad input is not an error), over 1m.
RECORD_ERROR_RATIO = "modelship:predictions:error_ratio1m"
#: 95th percentile request latency in seconds, over 1m.
RECORD_LATENCY_P95 = "modelship:prediction_latency_seconds:p95_1m"

#: Window of the live-quality recording rules and of the ModelshipQualityDrop alert.
QUALITY_WINDOW = "1h"
#: Live accuracy (classification) over :data:`QUALITY_WINDOW`: correct / labelled predictions.
RECORD_LIVE_ACCURACY = "modelship:labelled_predictions:accuracy1h"
#: Labelled predictions (both tasks) over :data:`QUALITY_WINDOW`.
RECORD_LABELLED_COUNT = "modelship:labelled_predictions:increase1h"
#: Labelled predictions (classification) over :data:`QUALITY_WINDOW`, by ``outcome`` (for
#: people: ``increase()`` extrapolates while a series is younger than the window; the A/B test
#: in :mod:`modelship.monitoring.significance` reads exact window deltas instead).
RECORD_LABELLED_BY_OUTCOME = "modelship:labelled_predictions:increase1h_by_outcome"
#: Live mean absolute error (regression) over :data:`QUALITY_WINDOW`.
RECORD_LIVE_MAE = "modelship:prediction_absolute_error:mae1h"
#: Live root mean squared error (regression) over :data:`QUALITY_WINDOW`.
RECORD_LIVE_RMSE = "modelship:prediction_squared_error:rmse1h"

# --- the operator's own metrics (modelship.operator.metrics) -------------------------------
#: Counter, label ``result`` (ok, retry, error).
OPERATOR_RECONCILES_TOTAL = "modelship_operator_reconciles_total"
#: Histogram of one reconcile.
OPERATOR_RECONCILE_SECONDS = "modelship_operator_reconcile_duration_seconds"
#: Counter, label ``kind`` (temporary, permanent, unexpected).
OPERATOR_ERRORS_TOTAL = "modelship_operator_errors_total"
#: Counter of training Jobs created, label ``trigger``.
OPERATOR_TRAININGS_STARTED_TOTAL = "modelship_operator_trainings_started_total"
#: Counter of recorded training outcomes, label ``outcome`` (the Trained condition's reason).
OPERATOR_TRAININGS_FINISHED_TOTAL = "modelship_operator_trainings_finished_total"
#: Histogram from Job creation to its recorded result.
OPERATOR_TRAINING_SECONDS = "modelship_operator_training_duration_seconds"
#: Counter of versions made champion.
OPERATOR_PROMOTIONS_TOTAL = "modelship_operator_promotions_total"
#: Gauge of ModelDeployments waiting for a reconcile.
OPERATOR_QUEUE_DEPTH = "modelship_operator_queue_depth"
#: Gauges of each ModelDeployment's rollout, labelled by ``model`` (the registered model name):
#: 1 for the rollout's current ``phase`` (0 for the others).
OPERATOR_ROLLOUT_PHASE = "modelship_operator_rollout_phase"
#: The current canary step, counted from 1 (0: no step in flight).
OPERATOR_ROLLOUT_STEP = "modelship_operator_rollout_step"
#: Percent of requests each ``version`` gets from the route.
OPERATOR_TRAFFIC_WEIGHT = "modelship_operator_traffic_weight"
#: 1 for the latest ``verdict`` of each analysis ``check`` of the current step (0 for the others).
OPERATOR_ANALYSIS_VERDICT = "modelship_operator_analysis_verdict"
#: The value each analysis ``check`` measured last.
OPERATOR_ANALYSIS_VALUE = "modelship_operator_analysis_value"
#: Counter of alerts received on the Alertmanager webhook, label ``result`` (recorded,
#: duplicate, unknown_resource, unwatched, unrouted, ignored).
OPERATOR_ALERTS_TOTAL = "modelship_operator_alerts_total"
#: Counter of calls of the Alertmanager webhook, label ``code`` (HTTP status).
OPERATOR_ALERT_WEBHOOK_REQUESTS_TOTAL = "modelship_operator_alert_webhook_requests_total"

# --- the operator's milestones, for the notification alerts (modelship.monitoring.rules) ------
#: Labels of the timestamp gauges below besides ``namespace``, :data:`LABEL_DEPLOYMENT`,
#: ``model`` and ``version``: the retraining's ``trigger`` and Job (``training_job``), the
#: champion a promotion replaced (``previous_version``), why a version was rolled back
#: (``reason``: AnalysisFailed, AnalysisInconclusive, Aborted, RolledBack) and the version that
#: serves after it (``champion_version``).
LABEL_TRIGGER = "trigger"
LABEL_TRAINING_JOB = "training_job"
LABEL_PREVIOUS_VERSION = "previous_version"
LABEL_REASON = "reason"
LABEL_CHAMPION_VERSION = "champion_version"
#: Gauges: the Unix time the operator started a retraining (drift, quality, schedule or manual;
#: ``version`` is the champion it may replace), made a version champion, or rolled one back.
#: One series per resource and kind, the latest; alerts fire while it is recent (a timestamp,
#: not a counter: a new series' first increment is invisible to ``increase()``).
OPERATOR_RETRAIN_STARTED_TIME = "modelship_operator_retrain_started_timestamp_seconds"
OPERATOR_PROMOTED_TIME = "modelship_operator_promoted_timestamp_seconds"
OPERATOR_ROLLED_BACK_TIME = "modelship_operator_rolled_back_timestamp_seconds"
#: Counter of versions rolled back, label ``reason``.
OPERATOR_ROLLBACKS_TOTAL = "modelship_operator_rollbacks_total"
