"""Label, annotation and environment-variable names shared by the operator, the chart, the
training entrypoint and the model server: one home, so a rename cannot miss a reader."""

from __future__ import annotations

PREFIX = "modelship.io/"

# --- labels ----------------------------------------------------------------------------
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
PART_OF_LABEL = "app.kubernetes.io/part-of"
COMPONENT_LABEL = "app.kubernetes.io/component"
#: The ModelDeployment an object (or a metric series) belongs to.
DEPLOYMENT_LABEL = PREFIX + "deployment"
#: The registered model version a serving pod serves.
VERSION_LABEL = PREFIX + "version"
#: champion, canary, or an A/B variant name.
VARIANT_LABEL = PREFIX + "variant"
#: Hash of the training-relevant spec a Job trained.
SPEC_HASH_LABEL = PREFIX + "spec-hash"

# --- annotations -----------------------------------------------------------------------
#: Why a training Job runs: spec, schedule, drift, quality or manual.
TRIGGER_ANNOTATION = PREFIX + "trigger"
#: Requests a person makes of a rollout (``modelship approve|abort|rollback``, or kubectl
#: annotate). The value names the version the request is about, so a request is acted on once:
#: once that version is no longer the candidate (or the champion, for a rollback) it is stale.
#: Approve the candidate waiting in AwaitingApproval (value: the candidate version).
APPROVE_ANNOTATION = PREFIX + "approve"
#: Roll the candidate back now (value: the candidate version).
ABORT_ANNOTATION = PREFIX + "abort"
#: Send all traffic back to the previous champion (value: the champion version to leave).
ROLLBACK_ANNOTATION = PREFIX + "rollback"
#: End an A/B test by making a variant's version champion (value: ``<variant>:<version>``).
PROMOTE_ANNOTATION = PREFIX + "promote"
#: On a ModelDeployment: a new value asks for a retraining now (``modelship retrain NAME``).
RETRAIN_ANNOTATION = PREFIX + "retrain"

# --- headers ---------------------------------------------------------------------------
#: What Envoy (so Contour and Envoy Gateway) appends to the Host (``:authority``) of a request
#: it mirrors (``request_mirror_policies``; Gateway API ``RequestMirror``): the model server
#: counts such a copy as shadow traffic (modelship.monitoring.metrics.TRAFFIC_SHADOW).
SHADOW_HOST_SUFFIX = "-shadow"

# --- environment of the pods -----------------------------------------------------------
ENV_SPEC = "MODELSHIP_SPEC"
ENV_MODEL_NAME = "MODELSHIP_MODEL_NAME"
ENV_MODEL_VERSION = "MODELSHIP_MODEL_VERSION"
ENV_VARIANT = "MODELSHIP_VARIANT"
ENV_PORT = "MODELSHIP_PORT"
ENV_MODEL_CACHE = "MODELSHIP_MODEL_CACHE"
ENV_DEPLOYMENT = "MODELSHIP_DEPLOYMENT"
ENV_NAMESPACE = "MODELSHIP_NAMESPACE"
ENV_GENERATION = "MODELSHIP_GENERATION"
ENV_JOB_NAME = "MODELSHIP_JOB_NAME"
ENV_TRIGGER = "MODELSHIP_TRIGGER"
#: Why a retraining runs (the drift alert's summary), logged to its MLflow run.
ENV_RETRAIN_REASON = "MODELSHIP_RETRAIN_REASON"
#: "true": train even on the very data bytes the champion was trained on.
ENV_FORCE = "MODELSHIP_FORCE"
ENV_RESULT_PATH = "MODELSHIP_RESULT_PATH"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"

# --- prediction store (spec.monitoring.feedback) ------------------------------------------
#: The model server's PostgreSQL DSN for the prediction store; the operator sets it from a
#: Secret's key (never from the resource).
ENV_PREDICTION_STORE_DSN = "MODELSHIP_PREDICTION_STORE_DSN"
#: Operator setting: the Secret (in the ModelDeployment's namespace) holding that DSN.
ENV_PREDICTION_STORE_SECRET = "MODELSHIP_PREDICTION_STORE_SECRET"
#: The key of that Secret that holds the DSN.
PREDICTION_STORE_SECRET_KEY = "dsn"
#: Model server tuning: rows the prediction store may buffer while the database is slow or down.
ENV_PREDICTION_STORE_BUFFER = "MODELSHIP_PREDICTION_STORE_BUFFER_ROWS"

# --- environment of the operator -------------------------------------------------------
#: Base URL of the Prometheus HTTP API the canary analysis queries.
ENV_PROMETHEUS_URL = "MODELSHIP_PROMETHEUS_URL"
#: Crash points armed for restart tests (modelship.operator.failpoints); never set in production.
ENV_FAILPOINTS = "MODELSHIP_FAILPOINTS"
