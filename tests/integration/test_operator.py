"""The operator's first vertical slice against a real control plane, a real MLflow server and
real training: the training pods run `modelship train` as local processes (hack/platform/kubelet.py),
every other pod is simulated by KWOK."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from modelship.operator.conditions import condition
from testdata import CALIFORNIA_HOUSING
from servers import MlflowServer, OperatorProcess
from spec_cases import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CRD = REPO / "manifests" / "crds" / "modelship.io_modeldeployments.yaml"
CHART = REPO / "charts" / "modelship"
HOUSING = CALIFORNIA_HOUSING
NAME = "california-housing"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    try:
        yield server
    finally:
        server.stop()


def service_account_kubeconfig(cluster, namespace: str, tmp_path: Path) -> Path:
    """The chart's operator ServiceAccount and namespaced Role, and a kubeconfig holding only
    that account's token: the operator runs with exactly the RBAC users install."""
    rendered = subprocess.run(
        [str(cluster.toolchain.helm), "template", "ms", str(CHART), "--namespace", namespace, "--kube-version", "1.36.0",
         "--set", f"operator.watchNamespaces={{{namespace}}}", "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout
    cluster.apply(rendered)
    token = cluster.kubectl("create", "token", "ms-operator", "-n", namespace, "--duration=2h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    cluster_entry = admin["clusters"][0]
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": "ms-operator", "user": {"token": token}}],
        "contexts": [{"name": "ms-operator", "context": {"cluster": cluster_entry["name"], "user": "ms-operator", "namespace": namespace}}],
        "current-context": "ms-operator",
    }
    path = tmp_path / "operator-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def operator(cluster, namespace, mlflow_server, pod_runner, tmp_path):
    cluster.apply(CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelship.io", "--timeout=60s")
    kubeconfig = service_account_kubeconfig(cluster, namespace, tmp_path)
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MODELSHIP_TRAINING_POD_LABELS": json.dumps({"modelship.io/test-pod-runner": "local"}),
        "MODELSHIP_RESYNC_INTERVAL": "15",
        "MODELSHIP_ENDPOINT_BASE_URL": "http://gateway.test",
        # Unchanged objects are applied again only every 10 minutes here: whatever is put back
        # sooner was put back by its watch event.
        "MODELSHIP_APPLY_CACHE_SECONDS": "600",
    }
    process = OperatorProcess(kubeconfig, namespace, env, tmp_path / "operator.log").start()
    try:
        yield process
    finally:
        process.stop()
        print(f"operator log: {process.log_path}")


def housing_sample(namespace: str) -> dict:
    resource = yaml.safe_load((REPO / "manifests/samples/california-housing-canary.yaml").read_text())
    resource["metadata"]["namespace"] = namespace
    resource["spec"]["dataset"]["uri"] = HOUSING.as_uri()
    # Each retraining here must be served whatever its score against the previous one.
    resource["spec"]["training"]["qualityGate"]["mustBeatChampion"] = False
    resource["spec"]["training"]["hyperparameters"]["n_estimators"] = 300
    # This test is about the lifecycle; canaries are tests/integration/test_rollout.py's. The
    # previous champion stays warm for a rollback only briefly, so its removal is seen here.
    resource["spec"]["rollout"] = {"strategy": "immediate", "rollbackWindow": "5s"}
    return resource


def get(cluster, namespace):
    return cluster.kubectl_json("get", "mdep", NAME, "-n", namespace)


def status_of(cluster, namespace):
    return get(cluster, namespace).get("status", {})


def names(cluster, kind, namespace):
    items = cluster.kubectl_json("get", kind, "-n", namespace, "-l", f"modelship.io/deployment={NAME}")["items"]
    return sorted(item["metadata"]["name"] for item in items)


def wait_champion(cluster, namespace, version, timeout=420):
    return cluster.wait_until(
        f"version {version} to be champion",
        lambda: (s := status_of(cluster, namespace)).get("championVersion") == version and s.get("phase") == "Serving" and s,
        timeout=timeout,
        interval=1,
    )


def patch_spec(cluster, namespace, patch):
    cluster.kubectl("patch", "mdep", NAME, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": patch}))


def test_model_deployment_lifecycle(cluster, namespace, operator, mlflow_server):
    from mlflow import MlflowClient

    registry = MlflowClient(tracking_uri=mlflow_server.url)
    model_name = f"{namespace}-{NAME}"

    # 1. apply → one Job → real training → version 1 → serving objects → Ready.
    cluster.apply(yaml.safe_dump(housing_sample(namespace)))
    first_jobs = cluster.wait_until("the first training Job", lambda: names(cluster, "jobs", namespace), timeout=60)
    assert len(first_jobs) == 1
    status = wait_champion(cluster, namespace, "1")
    assert names(cluster, "jobs", namespace) == first_jobs, "a reconcile created a second Job"
    assert status["lastTraining"]["job"] == first_jobs[0] and status["lastTraining"]["modelVersion"] == "1"
    assert status["lastTraining"]["metrics"]["r2"] >= 0.8
    assert status["observedGeneration"] == get(cluster, namespace)["metadata"]["generation"]
    assert condition(status["conditions"], "Ready")["status"] == "True" and condition(status["conditions"], "Trained")["status"] == "True"
    assert status["endpoint"] == f"http://gateway.test/{namespace}/{NAME}"
    assert status["traffic"] == [{"version": "1", "weight": 100, "role": "champion"}]
    assert names(cluster, "deployments", namespace) == [f"{NAME}-v1"]
    assert names(cluster, "services", namespace) == [f"{NAME}-v1"]
    assert names(cluster, "hpa", namespace) == [f"{NAME}-v1"]
    route = cluster.kubectl_json("get", "httproute", NAME, "-n", namespace)
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [(f"{NAME}-v1", 100)]
    assert registry.get_model_version_by_alias(model_name, "champion").version == "1"
    printed = cluster.kubectl("get", "mdep", "-n", namespace).stdout
    assert "Serving" in printed.splitlines()[1] and " 1 " in printed.splitlines()[1]

    # 1b. the route, the Service, the autoscaler and the Deployment deleted by hand → put back by the operator.
    for kind, name in (("httproute", NAME), ("service", f"{NAME}-v1"), ("hpa", f"{NAME}-v1"), ("deployment", f"{NAME}-v1")):
        uid = cluster.kubectl_json("get", kind, name, "-n", namespace)["metadata"]["uid"]
        cluster.kubectl("delete", kind, name, "-n", namespace, "--wait=true")
        cluster.wait_until(
            f"the {kind} to be recreated",
            lambda kind=kind, name=name, uid=uid: (found := cluster.kubectl("get", kind, name, "-n", namespace, "-o", "jsonpath={.metadata.uid}", check=False).stdout) and found != uid,
            timeout=30,
            interval=0.5,
        )
    route = cluster.kubectl_json("get", "httproute", NAME, "-n", namespace)
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [(f"{NAME}-v1", 100)]
    wait_champion(cluster, namespace, "1", timeout=60)

    # 2. new hyperparameters → a second Job → version 2 replaces version 1.
    patch_spec(cluster, namespace, {"training": {"hyperparameters": {"max_depth": 6}}})
    wait_champion(cluster, namespace, "2")
    assert len(names(cluster, "jobs", namespace)) == 2
    cluster.wait_until("version 1 to be removed", lambda: names(cluster, "deployments", namespace) == [f"{NAME}-v2"], timeout=60)
    assert registry.get_model_version_by_alias(model_name, "champion").version == "2"

    # 3. a dataset that is not there → the condition says why; version 2 keeps serving.
    #    Beside it, a resource whose estimator the training image lacks fails on its own.
    broken = housing_sample(namespace)
    broken["metadata"]["name"] = "broken"
    broken["spec"]["training"] = {"framework": "sklearn", "estimator": "lightgbm:LGBMRegressor"}
    cluster.apply(yaml.safe_dump(broken))
    patch_spec(cluster, namespace, {"dataset": {"uri": "file:///nonexistent/housing.csv"}})
    failed = cluster.wait_until(
        "the failed training to be reported",
        lambda: (s := status_of(cluster, namespace)).get("phase") == "Degraded" and s,
        timeout=300,
        interval=1,
    )
    trained = condition(failed["conditions"], "Trained")
    assert trained["status"] == "False" and trained["reason"] == "InvalidInput"
    assert "nonexistent" in trained["message"]
    assert failed["championVersion"] == "2" and condition(failed["conditions"], "Ready")["status"] == "True"
    assert names(cluster, "deployments", namespace) == [f"{NAME}-v2"]
    reasons = {e["reason"] for e in cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={NAME}")["items"]}
    assert {"TrainingStarted", "TrainingSucceeded", "Promoted", "InvalidInput"} <= reasons
    broken_status = cluster.wait_until(
        "the broken resource to fail",
        lambda: (s := cluster.kubectl_json("get", "mdep", "broken", "-n", namespace).get("status", {})).get("phase") == "Failed" and s,
        timeout=300,
        interval=1,
    )
    assert condition(broken_status["conditions"], "Trained")["reason"] == "InvalidInput"
    assert "lightgbm" in condition(broken_status["conditions"], "Trained")["message"]
    cluster.kubectl("delete", "mdep", "broken", "-n", namespace)

    # 4. the operator dies mid-training → after a restart: no duplicate Job, same end state.
    patch_spec(cluster, namespace, {"dataset": {"uri": HOUSING.as_uri()}, "training": {"hyperparameters": {"max_depth": 5}}})
    cluster.wait_until("the fourth Job", lambda: len(names(cluster, "jobs", namespace)) == 4, timeout=60)
    operator.kill()
    operator.start()
    wait_champion(cluster, namespace, "3")
    assert len(names(cluster, "jobs", namespace)) == 4
    metrics = operator.metrics()
    assert "modelship_operator_reconciles_total" in metrics
    # Nothing was refused: the chart's Role covers everything the operator does.
    assert 'modelship_operator_errors_total{kind="unexpected"}' not in metrics or 'modelship_operator_errors_total{kind="unexpected"} 0.0' in metrics
    assert "Forbidden" not in operator.log_path.read_text()

    # 5. delete → the garbage collector removes everything the resource owned.
    cluster.kubectl("delete", "mdep", NAME, "-n", namespace, "--wait=true", "--timeout=60s")
    for kind in ("jobs", "deployments", "services", "httproutes", "hpa"):
        cluster.wait_until(f"{kind} to be collected", lambda kind=kind: names(cluster, kind, namespace) == [], timeout=120)
    # Versions stay in the registry for lineage; the serving alias goes with the resource.
    cluster.wait_until("the champion alias to be dropped", lambda: "champion" not in registry.get_registered_model(model_name).aliases, timeout=60)
    assert len(registry.search_model_versions(f"name = '{model_name}'")) == 3
