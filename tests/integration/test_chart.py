"""The Helm chart: lints, validates its values, and what it renders is accepted by a real API server."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from spec_cases import REPO

CHART = REPO / "charts" / "modelship"
pytestmark = pytest.mark.integration


def helm(cluster, *args, check=True):
    return subprocess.run([str(cluster.toolchain.helm), *args], capture_output=True, text=True, check=check)


def render(cluster, *sets):
    args = ["template", "ms", str(CHART), "--namespace", "modelship-system", "--kube-version", "1.36.0"]
    for item in sets:
        args += ["--set", item]
    return [doc for doc in yaml.safe_load_all(helm(cluster, *args).stdout) if doc]


def test_lint(cluster):
    assert helm(cluster, "lint", "--strict", str(CHART), "--kube-version", "1.36.0").returncode == 0


@pytest.mark.parametrize("bad", ["operator.workers=0", "mlflow.trackingUri=sqlite:///x.db", "gateway.ref=nogateway", "operator.typo=1", "monitoring.podMonitor.interval=often"])
def test_values_schema_rejects(cluster, bad):
    result = helm(cluster, "template", "ms", str(CHART), "--kube-version", "1.36.0", "--set", bad, check=False)
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr


def test_cluster_wide_by_default_namespaced_on_request(cluster):
    kinds = [d["kind"] for d in render(cluster)]
    assert "ClusterRole" in kinds and "Role" not in kinds
    scoped = render(cluster, "operator.watchNamespaces={team-a,team-b}")
    assert [d["kind"] for d in scoped].count("Role") == 2 and "ClusterRole" not in [d["kind"] for d in scoped]
    deployment = next(d for d in scoped if d["kind"] == "Deployment")
    assert {"--namespace=team-a", "--namespace=team-b"} <= set(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def test_least_privilege_and_locked_down_pod(cluster):
    documents = render(cluster, "mlflow.credentialsSecret=mlflow-creds")
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert "*" not in verbs and not any("*" in rule["resources"] for rule in role["rules"])
    assert not any(r in rule["resources"] for rule in role["rules"] for r in ("secrets", "configmaps", "namespaces", "customresourcedefinitions"))
    pod = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-creds"}}]
    # Credentials arrive only through the Secret; no token, password or key is set literally.
    assert not any(word in e["name"] for e in container["env"] for word in ("TOKEN", "PASSWORD", "ACCESS_KEY", "SECRET_KEY"))


def test_rendered_chart_is_accepted_by_the_api_server(cluster):
    cluster.kubectl("create", "namespace", "modelship-system", check=False)
    monitoring = ["monitoring.prometheusRule.enabled=true", "monitoring.podMonitor.enabled=true", "monitoring.grafanaDashboards.enabled=true"]
    for sets in ([], ["operator.watchNamespaces={default}"], monitoring):
        documents = render(cluster, *sets)
        result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(documents))
        assert result.returncode == 0


def test_monitoring_objects_only_on_request_with_the_generated_rules(cluster):
    from modelship.monitoring.rules import rule_groups

    kinds = [d["kind"] for d in render(cluster)]
    assert "PrometheusRule" not in kinds and "PodMonitor" not in kinds and "ConfigMap" not in kinds
    documents = render(cluster, "monitoring.prometheusRule.enabled=true", "monitoring.prometheusRule.labels.release=kps", "monitoring.podMonitor.enabled=true")
    rule = next(d for d in documents if d["kind"] == "PrometheusRule")
    # Included untemplated: Prometheus gets the alerts' {{ $labels.* }} templates as generated.
    assert rule["spec"] == rule_groups() and rule["metadata"]["labels"]["release"] == "kps"
    monitor = next(d for d in documents if d["kind"] == "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    scoped = next(d for d in render(cluster, "monitoring.podMonitor.enabled=true", "operator.watchNamespaces={team-a,team-b}") if d["kind"] == "PodMonitor")
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_pod_monitor_selects_the_pods_the_operator_builds(cluster):
    from modelship.api import ModelDeployment
    from modelship.operator import builders
    from modelship.operator.config import OperatorConfig

    resource = ModelDeployment.model_validate(yaml.safe_load((REPO / "manifests" / "samples" / "diabetes-builtin.yaml").read_text()))
    resource.metadata.uid = "uid-1"
    deployment = builders.serving_deployment(resource, OperatorConfig(), "3", "champion")
    pod = deployment["spec"]["template"]
    monitor = next(d for d in render(cluster, "monitoring.podMonitor.enabled=true") if d["kind"] == "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports
    assert set(monitor["spec"]["podTargetLabels"]) <= set(pod["metadata"]["labels"])


def test_dashboards_for_the_grafana_sidecar(cluster):
    from modelship.monitoring.dashboards import DASHBOARD_FILE

    maps = [d for d in render(cluster, "monitoring.grafanaDashboards.enabled=true") if d["kind"] == "ConfigMap"]
    assert len(maps) == len(DASHBOARD_FILE.outputs)
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = (REPO / DASHBOARD_FILE.outputs[0]).read_text()
    # Included untemplated: the panels' {{version}} legends reach Grafana as generated.
    assert json.loads(maps[0]["data"][DASHBOARD_FILE.outputs[0].name]) == json.loads(committed)
    relabelled = render(cluster, "monitoring.grafanaDashboards.enabled=true", "monitoring.grafanaDashboards.sidecarLabel=dashboards", "monitoring.grafanaDashboards.sidecarLabelValue=modelship")
    assert next(d for d in relabelled if d["kind"] == "ConfigMap")["metadata"]["labels"]["dashboards"] == "modelship"
