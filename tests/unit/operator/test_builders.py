"""Builders: spec in, object out. What Kubernetes will be asked to run, checked without a cluster."""

from __future__ import annotations

import json

import pytest

from modelship.api import ModelDeployment
from modelship.operator import builders
from modelship.operator.config import OperatorConfig
from spec_cases import base_resource

CONFIG = OperatorConfig(mlflow_tracking_uri="http://mlflow:5000", training_pod_labels={"extra": "yes"}, credentials_secret="mlflow-creds")


def resource(mutate=None) -> ModelDeployment:
    raw = base_resource()
    raw["metadata"].update(uid="1234", generation=3)
    if mutate:
        mutate(raw)
    return ModelDeployment.model_validate(raw)


def test_training_job_runs_the_entrypoint_with_the_spec_and_lineage():
    md = resource()
    job = builders.training_job(md, CONFIG, builders.training_hash(md))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["command"] == ["modelship", "train"]
    assert json.loads(env["MODELSHIP_SPEC"])["dataset"]["target"] == "median_house_value"
    assert env["MODELSHIP_JOB_NAME"] == job["metadata"]["name"]
    assert env["MODELSHIP_GENERATION"] == "3" and env["MODELSHIP_MODEL_NAME"] == "default-california-housing"
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-creds"}}]
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 3]
    assert job["spec"]["template"]["metadata"]["labels"]["extra"] == "yes"
    assert job["metadata"]["ownerReferences"][0] == {
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment", "name": "california-housing", "uid": "1234", "controller": True, "blockOwnerDeletion": True,
    }


def test_pods_are_non_root_and_locked_down():
    md = resource()
    for obj in (builders.training_job(md, CONFIG, "h"), builders.serving_deployment(md, CONFIG, "1", "champion")):
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        security = pod["containers"][0]["securityContext"]
        assert security == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
        assert not any("secret" in json.dumps(e).lower() and "value" in e for e in pod["containers"][0]["env"] if e["name"] != "MODELSHIP_SPEC")


@pytest.mark.parametrize(
    "change, retrains",
    [
        (lambda r: r["spec"]["training"]["hyperparameters"].update(max_depth=8), True),
        (lambda r: r["spec"]["dataset"].update(testSize=0.3), True),
        (lambda r: r["spec"].update(modelName="other"), True),
        (lambda r: r["spec"]["serving"]["autoscaling"].update(maxReplicas=8), False),
        (lambda r: r["spec"]["rollout"]["analysis"].update(minRequests=5), False),
        (lambda r: r["spec"]["training"].update(timeout="2h"), False),
        (lambda r: r["spec"]["training"].update(schedule="@daily"), False),
    ],
)
def test_training_hash_moves_only_with_what_changes_the_model(change, retrains):
    assert (builders.training_hash(resource()) != builders.training_hash(resource(change))) is retrains


def test_job_name_is_deterministic_and_fits():
    md = resource(lambda r: r["metadata"].update(name="a" * 45))
    name = builders.training_job(md, CONFIG, builders.training_hash(md))["metadata"]["name"]
    assert name == builders.training_job(md, CONFIG, builders.training_hash(md))["metadata"]["name"]
    assert len(name) <= 63


def test_serving_deployment_and_service_select_one_version():
    md = resource()
    deployment = builders.serving_deployment(md, CONFIG, "7", "champion")
    service = builders.serving_service(md, "7", "champion")
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "california-housing-v7"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELSHIP_MODEL_VERSION"] == "7" and env["MODELSHIP_VARIANT"] == "champion"
    # Autoscaled: the HPA owns the replica count.
    assert "replicas" not in deployment["spec"]
    hpa = builders.serving_hpa(md, "7", "champion")
    assert hpa["spec"]["maxReplicas"] == 4 and hpa["spec"]["scaleTargetRef"]["name"] == "california-housing-v7"


@pytest.mark.parametrize(
    "enabled, secret, expected",
    [
        (True, "prediction-store", [{"name": "MODELSHIP_PREDICTION_STORE_DSN", "valueFrom": {"secretKeyRef": {"name": "prediction-store", "key": "dsn", "optional": True}}}]),
        (True, None, []),  # no Secret configured: the server runs without a store and logs why
        (False, "prediction-store", []),
    ],
)
def test_serving_pods_get_the_prediction_store_dsn_from_the_secret_only(enabled, secret, expected):
    md = resource(lambda r: r["spec"]["monitoring"].update(feedback={"enabled": enabled, "retention": "48h"}))
    config = OperatorConfig(mlflow_tracking_uri="http://mlflow:5000", prediction_store_secret=secret)
    deployment = builders.serving_deployment(md, config, "7", "champion")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "MODELSHIP_PREDICTION_STORE_DSN"] == expected
    # The spec the server reads carries the feedback settings, never a DSN.
    spec = json.loads(next(e["value"] for e in env if e["name"] == "MODELSHIP_SPEC"))
    assert spec["monitoring"]["feedback"]["enabled"] is enabled and spec["monitoring"]["feedback"]["retention"] == "48h"
    assert "postgres" not in json.dumps(deployment)


def test_operator_config_reads_the_prediction_store_secret():
    assert OperatorConfig.from_env({"MODELSHIP_PREDICTION_STORE_SECRET": "store"}).prediction_store_secret == "store"
    assert OperatorConfig.from_env({}).prediction_store_secret is None


def test_fixed_replicas_and_no_hpa():
    md = resource(lambda r: r["spec"]["serving"].pop("autoscaling") and r["spec"]["serving"].update(replicas=2))
    assert builders.serving_deployment(md, CONFIG, "1", "champion")["spec"]["replicas"] == 2
    assert builders.serving_hpa(md, "1", "champion") is None


def test_http_route_weights_and_path():
    md = resource()
    route = builders.http_route(md, CONFIG, {"2": 90, "10": 10})
    rule = route["spec"]["rules"][0]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [("california-housing-v2", 90), ("california-housing-v10", 10)]
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/default/california-housing"}
    assert route["spec"]["parentRefs"][0]["name"] == CONFIG.gateway_name
