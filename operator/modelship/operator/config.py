"""Operator settings, read once at start-up from the environment (the Helm chart sets them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from modelship.api import names


def _labels(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("MODELSHIP_TRAINING_POD_LABELS must be a JSON object of strings")
    return value


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the builders need beyond the ModelDeployment itself."""

    mlflow_tracking_uri: str = "http://modelship-mlflow:5000"
    #: Secret whose keys become env vars of training and serving pods (MLflow or S3
    #: credentials), so no secret ever sits in a ModelDeployment.
    credentials_secret: str | None = None
    training_image: str = "ghcr.io/modelship/modelship-training:0.1.0"
    serving_image: str = "ghcr.io/modelship/modelship-serving:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    #: ServiceAccount of training and serving pods: no API access, token not mounted.
    workload_service_account: str | None = None
    gateway_name: str = "modelship-gateway"
    gateway_namespace: str = "modelship-system"
    #: Base URL of the gateway as clients see it; endpoints are <base>/<namespace>/<name>.
    endpoint_base_url: str = "http://localhost:8000"
    #: Extra labels for training pods (the test pod runner selects on one).
    training_pod_labels: dict[str, str] = field(default_factory=dict)
    job_backoff_limit: int = 1
    job_ttl_seconds: int = 86400
    serving_port: int = 3000
    http_port: int = 8080
    #: Seconds between two full resyncs of every ModelDeployment (events do the rest).
    resync_interval: float = 300.0
    #: Reconciles in flight at once (one per resource at most). They wait on the API server and
    #: Prometheus, not on CPU, and their API calls share a few threads in priority order
    #: (kube.CallGate): when 100 pauses end at once, 64 workers take every due resource off the
    #: queue at once, where 16 left it waiting ~2 s for a worker (docs/benchmarks.md).
    workers: int = 64
    #: Secret (in each ModelDeployment's namespace) whose key ``dsn`` is the PostgreSQL DSN of the
    #: prediction store; serving pods of a spec with monitoring.feedback.enabled get it as env.
    prediction_store_secret: str | None = None
    #: Prometheus HTTP API the canary analysis queries (None: every check is an Error verdict,
    #: so no canary advances without metrics).
    prometheus_url: str | None = None
    #: Seconds one analysis query may take before it counts as Prometheus unreachable.
    prometheus_timeout: float = 5.0
    #: Seconds a rolled-back candidate keeps its pods (no traffic) for inspection.
    retain_rolled_back_seconds: float = 600.0
    #: Which traffic provider routes the endpoints (modelship.operator.traffic).
    traffic_provider: str = "gatewayapi"
    #: File holding the bearer token Alertmanager sends to POST /alerts (a mounted Secret);
    #: without it the alert webhook is off.
    alert_token_file: str | None = None
    #: Largest alert webhook body accepted, in bytes (larger: 413).
    alert_max_body_bytes: int = 1 << 20
    #: Retraining Jobs (drift, quality, schedule, manual) running at once across all ModelDeployments.
    max_concurrent_retrains: int = 2
    #: Seconds an object this process applied is not applied again unchanged (0: always apply).
    apply_cache_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = dict(os.environ if env is None else env)
        gateway = env.get("MODELSHIP_GATEWAY", f"{cls.gateway_namespace}/{cls.gateway_name}")
        gateway_namespace, _, gateway_name = gateway.rpartition("/")
        return cls(
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI", cls.mlflow_tracking_uri),
            credentials_secret=env.get("MODELSHIP_CREDENTIALS_SECRET") or None,
            training_image=env.get("MODELSHIP_TRAINING_IMAGE", cls.training_image),
            serving_image=env.get("MODELSHIP_SERVING_IMAGE", cls.serving_image),
            image_pull_policy=env.get("MODELSHIP_IMAGE_PULL_POLICY", cls.image_pull_policy),
            workload_service_account=env.get("MODELSHIP_WORKLOAD_SERVICE_ACCOUNT") or None,
            gateway_name=gateway_name,
            gateway_namespace=gateway_namespace or cls.gateway_namespace,
            endpoint_base_url=env.get("MODELSHIP_ENDPOINT_BASE_URL", cls.endpoint_base_url).rstrip("/"),
            training_pod_labels=_labels(env.get("MODELSHIP_TRAINING_POD_LABELS")),
            job_backoff_limit=int(env.get("MODELSHIP_JOB_BACKOFF_LIMIT", cls.job_backoff_limit)),
            job_ttl_seconds=int(env.get("MODELSHIP_JOB_TTL_SECONDS", cls.job_ttl_seconds)),
            http_port=int(env.get("MODELSHIP_HTTP_PORT", cls.http_port)),
            resync_interval=float(env.get("MODELSHIP_RESYNC_INTERVAL", cls.resync_interval)),
            workers=int(env.get("MODELSHIP_WORKERS", cls.workers)),
            prediction_store_secret=env.get(names.ENV_PREDICTION_STORE_SECRET) or None,
            prometheus_url=(env.get(names.ENV_PROMETHEUS_URL) or "").rstrip("/") or None,
            prometheus_timeout=float(env.get("MODELSHIP_PROMETHEUS_TIMEOUT", cls.prometheus_timeout)),
            retain_rolled_back_seconds=float(env.get("MODELSHIP_RETAIN_ROLLED_BACK_SECONDS", cls.retain_rolled_back_seconds)),
            traffic_provider=env.get("MODELSHIP_TRAFFIC_PROVIDER", cls.traffic_provider),
            alert_token_file=env.get("MODELSHIP_ALERT_TOKEN_FILE") or None,
            alert_max_body_bytes=int(env.get("MODELSHIP_ALERT_MAX_BODY_BYTES", cls.alert_max_body_bytes)),
            max_concurrent_retrains=int(env.get("MODELSHIP_MAX_CONCURRENT_RETRAINS", cls.max_concurrent_retrains)),
            apply_cache_seconds=float(env.get("MODELSHIP_APPLY_CACHE_SECONDS", cls.apply_cache_seconds)),
        )
