"""Builders of every object the operator owns: spec in, Kubernetes object out, no I/O.

Each kind is built in exactly one place; the reconciler decides which ones should exist.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from modelship.api import parse_duration
from modelship.api import names
from modelship.api.names import (
    COMPONENT_LABEL,
    DEPLOYMENT_LABEL,
    MANAGED_BY_LABEL,
    PART_OF_LABEL,
    SPEC_HASH_LABEL,
    TRIGGER_ANNOTATION,
    VARIANT_LABEL,
    VERSION_LABEL,
)
from modelship.api.v1alpha1 import API_VERSION, KIND, ModelDeployment, ResourceRequirements
from modelship.operator.config import OperatorConfig

TRAINING_CONTAINER = "train"
SERVING_CONTAINER = "model"
SERVICE_PORT = 80

#: Exit codes of ``modelship train`` that no retry can fix (invalid input, quality gate).
NON_RETRYABLE_EXIT_CODES = [2, 3]


def training_hash(resource: ModelDeployment) -> str:
    """Hash of what decides the trained model; a change retrains, a serving change does not."""
    spec = resource.spec
    relevant = {
        "task": spec.task,
        "dataset": spec.dataset.to_wire(),
        "training": {k: v for k, v in spec.training.to_wire().items() if k not in {"schedule", "resources", "timeout", "image"}},
        "modelName": resource.registered_model_name,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:10]


def training_job_name(name: str, spec_hash: str, attempt: int = 0) -> str:
    """Deterministic, so a repeated reconcile finds the Job instead of making a second one.

    A retraining (``attempt`` > 0) trades hash characters for its number: Job names must fit
    a 63-character label value, and ModelDeployment names take up to 45 of them."""
    if not attempt:
        return f"{name}-train-{spec_hash}"
    suffix = f"-{attempt}"
    return f"{name}-train-{spec_hash[: max(len(spec_hash) - len(suffix), 4)]}{suffix}"


def serving_name(name: str, version: str) -> str:
    return f"{name}-v{version}"


def common_labels(resource: ModelDeployment, component: str) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: "modelship",
        PART_OF_LABEL: "modelship",
        COMPONENT_LABEL: component,
        DEPLOYMENT_LABEL: resource.metadata.name,
    }


def owner_reference(resource: ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": resource.metadata.name,
        "uid": resource.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(resource: ModelDeployment, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata = {
        "name": name,
        "namespace": resource.metadata.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(resource)],
    }
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def _resources(requirements: ResourceRequirements | None, default: dict[str, Any]) -> dict[str, Any]:
    return requirements.to_wire() if requirements else default


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _shared_env(resource: ModelDeployment, config: OperatorConfig) -> list[dict[str, Any]]:
    return [
        {"name": names.ENV_SPEC, "value": json.dumps(resource.spec.to_wire(), sort_keys=True)},
        {"name": names.ENV_MODEL_NAME, "value": resource.registered_model_name},
        {"name": names.ENV_TRACKING_URI, "value": config.mlflow_tracking_uri},
        {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
        {"name": "DO_NOT_TRACK", "value": "true"},
    ]


def _env_from(config: OperatorConfig) -> list[dict[str, Any]]:
    return [{"secretRef": {"name": config.credentials_secret}}] if config.credentials_secret else []


def _container(
    name: str, image: str, subcommand: str, env: list[dict[str, Any]], resources: dict[str, Any], config: OperatorConfig, mounts: list[dict[str, str]], **extra: Any
) -> dict[str, Any]:
    """A ``modelship <subcommand>`` container, locked down, credentials from the Secret only.

    The root filesystem is read-only, so ``/tmp`` (an emptyDir from :func:`_pod_spec_common`)
    is the writable home of MLflow's, BentoML's and Python's scratch files."""
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["modelship", subcommand],
        "env": [*env, {"name": "HOME", "value": "/tmp"}],
        **extra,
        "resources": resources,
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
    }
    if config.credentials_secret:
        container["envFrom"] = _env_from(config)
    return container


def _pod_spec_common(config: OperatorConfig, volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "volumes": [{"name": "tmp", "emptyDir": {}}, *(volumes or [])],
    }
    if config.workload_service_account:
        spec["serviceAccountName"] = config.workload_service_account
    return spec


def training_job(
    resource: ModelDeployment, config: OperatorConfig, spec_hash: str, trigger: str = "spec", attempt: int = 0, reason: str | None = None, force: bool = False
) -> dict[str, Any]:
    """The Job that runs ``modelship train`` for this spec; a retraining also carries its
    ``reason`` (logged to its MLflow run) and whether to ``force`` it on unchanged data."""
    name = training_job_name(resource.metadata.name, spec_hash, attempt)
    labels = {**common_labels(resource, "training"), SPEC_HASH_LABEL: spec_hash}
    training = resource.spec.training
    env = _shared_env(resource, config) + [
        {"name": names.ENV_DEPLOYMENT, "value": resource.metadata.name},
        {"name": names.ENV_NAMESPACE, "value": resource.metadata.namespace},
        {"name": names.ENV_GENERATION, "value": str(resource.metadata.generation or 0)},
        {"name": names.ENV_JOB_NAME, "value": name},
        {"name": names.ENV_TRIGGER, "value": trigger},
        {"name": names.ENV_RESULT_PATH, "value": "/dev/termination-log"},
    ]
    if reason:
        env.append({"name": names.ENV_RETRAIN_REASON, "value": reason[:2000]})
    if force:
        env.append({"name": names.ENV_FORCE, "value": "true"})
    container = _container(
        TRAINING_CONTAINER,
        training.image or config.training_image,
        "train",
        env,
        _resources(training.resources, {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}),
        config,
        [],
        terminationMessagePath="/dev/termination-log",
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    pod_spec = {**_pod_spec_common(config), "restartPolicy": "Never", "containers": [container]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(resource, name, labels, {TRIGGER_ANNOTATION: trigger}),
        "spec": {
            "backoffLimit": config.job_backoff_limit,
            "activeDeadlineSeconds": int(parse_duration(training.timeout)),
            "ttlSecondsAfterFinished": config.job_ttl_seconds,
            # Bad input and a failed gate fail the same way on every retry.
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": TRAINING_CONTAINER, "operator": "In", "values": NON_RETRYABLE_EXIT_CODES}},
                ]
            },
            "template": {"metadata": {"labels": {**labels, **config.training_pod_labels}}, "spec": pod_spec},
        },
    }


def serving_labels(resource: ModelDeployment, version: str, variant: str) -> dict[str, str]:
    return {**common_labels(resource, "serving"), VERSION_LABEL: version, VARIANT_LABEL: variant}


def serving_deployment(resource: ModelDeployment, config: OperatorConfig, version: str, variant: str, replicas: int | None = None) -> dict[str, Any]:
    """One Deployment of ``modelship serve`` per registered model version; ``replicas`` overrides
    the spec's scaling (a previous champion kept warm for a rollback runs one replica)."""
    name = serving_name(resource.metadata.name, version)
    labels = serving_labels(resource, version, variant)
    selector = {DEPLOYMENT_LABEL: resource.metadata.name, VERSION_LABEL: version}
    serving = resource.spec.serving
    env = _shared_env(resource, config) + [
        {"name": names.ENV_MODEL_VERSION, "value": version},
        {"name": names.ENV_VARIANT, "value": variant},
        {"name": names.ENV_PORT, "value": str(config.serving_port)},
        {"name": names.ENV_MODEL_CACHE, "value": "/cache"},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
    ]
    env += _prediction_store_env(resource, config)
    probe = {"httpGet": {"port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2}
    container = _container(
        SERVING_CONTAINER,
        serving.image or config.serving_image,
        "serve",
        env,
        _resources(serving.resources, {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}),
        config,
        [{"name": "model-cache", "mountPath": "/cache"}],
        ports=[{"name": "http", "containerPort": config.serving_port, "protocol": "TCP"}],
        readinessProbe={**probe, "httpGet": {"path": "/readyz", "port": "http"}},
        livenessProbe={**probe, "httpGet": {"path": "/healthz", "port": "http"}, "failureThreshold": 6},
        startupProbe={**probe, "httpGet": {"path": "/healthz", "port": "http"}, "failureThreshold": 60},
    )
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": labels, "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(config.serving_port), "prometheus.io/path": "/metrics"}},
            "spec": {**_pod_spec_common(config, [{"name": "model-cache", "emptyDir": {}}]), "containers": [container]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    elif serving.autoscaling is None:
        spec["replicas"] = 1 if serving.replicas is None else serving.replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(resource, name, labels), "spec": spec}


def _prediction_store_env(resource: ModelDeployment, config: OperatorConfig) -> list[dict[str, Any]]:
    """The prediction store's DSN from the operator's Secret, never from the resource.

    ``optional``: a missing Secret must not keep the model from serving; the server then runs
    without a store and says so in its log (and ``POST /feedback`` answers 501)."""
    if not resource.spec.monitoring.feedback.enabled or not config.prediction_store_secret:
        return []
    secret = {"name": config.prediction_store_secret, "key": names.PREDICTION_STORE_SECRET_KEY, "optional": True}
    return [{"name": names.ENV_PREDICTION_STORE_DSN, "valueFrom": {"secretKeyRef": secret}}]


def serving_service(resource: ModelDeployment, version: str, variant: str) -> dict[str, Any]:
    name = serving_name(resource.metadata.name, version)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(resource, name, serving_labels(resource, version, variant)),
        "spec": {
            "type": "ClusterIP",
            "selector": {DEPLOYMENT_LABEL: resource.metadata.name, VERSION_LABEL: version},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def serving_hpa(resource: ModelDeployment, version: str, variant: str) -> dict[str, Any] | None:
    autoscaling = resource.spec.serving.autoscaling
    if autoscaling is None:
        return None
    name = serving_name(resource.metadata.name, version)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(resource, name, serving_labels(resource, version, variant)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": autoscaling.target_cpu_utilization}}}],
        },
    }


def route_path(resource: ModelDeployment) -> str:
    return f"/{resource.metadata.namespace}/{resource.metadata.name}"


def endpoint_url(resource: ModelDeployment, config: OperatorConfig) -> str:
    return f"{config.endpoint_base_url}{route_path(resource)}"


def http_route(
    resource: ModelDeployment,
    config: OperatorConfig,
    weights: dict[str, int],
    header_routes: Sequence[Any] = (),
    mirror: Any | None = None,
) -> dict[str, Any]:
    """The Gateway API route of the endpoint: one rule per header match (each to one version),
    then the weighted default rule; ``weights`` maps model version → percent, ``header_routes``
    and ``mirror`` are :class:`modelship.operator.traffic.HeaderRoute` and ``Mirror``."""
    name = resource.metadata.name
    path = {"path": {"type": "PathPrefix", "value": route_path(resource)}}
    rewrite = {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}

    def backend(version: str, weight: int) -> dict[str, Any]:
        return {"name": serving_name(name, version), "port": SERVICE_PORT, "weight": weight}

    rules = [
        {"matches": [{**path, "headers": [{"type": "Exact", "name": h.name, "value": h.value}]}], "filters": [rewrite], "backendRefs": [backend(h.version, 1)]}
        for h in header_routes
    ]
    filters = [rewrite]
    if mirror is not None:
        filters.append({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": serving_name(name, mirror.version), "port": SERVICE_PORT}, "percent": mirror.percent}})
    ordered = sorted(weights.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0)
    rules.append({"matches": [path], "filters": filters, "backendRefs": [backend(version, weight) for version, weight in ordered]})
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _metadata(resource, name, common_labels(resource, "routing")),
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": config.gateway_name, "namespace": config.gateway_namespace}],
            "rules": rules,
        },
    }
