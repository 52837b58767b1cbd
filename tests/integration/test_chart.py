"""The Helm chart: lints, validates its values, renders each documented scenario (charts/modelship/ci/)
as intended, and everything it renders is accepted by a real API server with the Gateway API and
Prometheus Operator CRDs."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from modelship.operator.config import OperatorConfig
from helmchart import leaf_paths, CHART, KUBE_VERSION, REPO, SCENARIOS, container, env_of, find, helm, kinds, pod_templates, render, selects

pytestmark = pytest.mark.integration
SCENARIO_IDS = [p.name.removesuffix("-values.yaml") for p in SCENARIOS]


def scenario(name: str) -> tuple:
    return (CHART / "ci" / f"{name}-values.yaml",)


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_lint_strict(values):
    result = helm("lint", "--strict", str(CHART), "-f", str(values), "--kube-version", KUBE_VERSION)
    assert "0 chart(s) failed" in result.stdout and "[WARNING]" not in result.stdout


@pytest.mark.parametrize(
    "bad, field",
    [
        ("operator.workers=0", "workers"),
        ("mlflow.trackingUri=sqlite:///x.db", "trackingUri"),
        ("gateway.ref=nogateway", "ref"),
        ("operator.typo=1", "typo"),
        ("monitoring.podMonitor.interval=often", "interval"),
        ("gateway.listener.protocol=TCP", "protocol"),
        ("postgresql.auth.username=Robert'); DROP", "username"),
        ("mlflow.artifacts.persistence.size=lots", "size"),
        ("networkPolicy.prometheus.podSelector.matchLabels.app=1", "app"),
        ("fullnameOverride=Not_A_Name", "fullnameOverride"),
    ],
)
def test_values_schema_rejects_naming_the_field(bad, field):
    result = helm("template", "ms", str(CHART), "--kube-version", KUBE_VERSION, "--set", bad, check=False)
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr
    assert field in result.stderr


@pytest.mark.parametrize(
    "sets, message",
    [
        (["mlflow.enabled=false"], "mlflow.trackingUri: required when mlflow.enabled is false"),
        (["postgresql.enabled=false"], "mlflow.backendStore.existingSecret: required when postgresql.enabled is false"),
        (["gateway.enabled=true"], "gateway.className: required when gateway.enabled"),
        (["gateway.enabled=true", "gateway.className=eg", "gateway.listener.protocol=HTTPS"], "gateway.listener.tlsSecretName: required"),
    ],
)
def test_inconsistent_values_fail_with_the_field_and_the_fix(sets, message):
    result = helm("template", "ms", str(CHART), "--kube-version", KUBE_VERSION, *sum((["--set", s] for s in sets), []), check=False)
    assert result.returncode != 0 and message in result.stderr


def _schema_at(schema, path):
    for key in path:
        schema = schema.get("properties", {}).get(key)
        if schema is None:
            return None
    return schema


def test_every_value_is_documented_and_in_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented, unschematised = [], []
    for path in leaf_paths(values):
        # Free-form objects (securityContexts, resources, selectors) are data: their keys are
        # Kubernetes fields, documented by the `##` line of the value that holds them.
        option = path
        while len(option) > 1 and (_schema_at(schema, option[:-1]) is None or _is_data(_schema_at(schema, option[:-1]))):
            option = option[:-1]
        if _schema_at(schema, option) is None:
            unschematised.append(".".join(path))
            continue
        # The option's own line is preceded by a `##` comment (possibly several lines of it).
        depth, index = 0, -1
        for key in option:
            index = next(i for i in range(index + 1, len(lines)) if lines[i].strip().startswith(f"{key}:") and len(lines[i]) - len(lines[i].lstrip()) == depth * 2)
            depth += 1
        if not lines[index - 1].strip().startswith("##"):
            undocumented.append(".".join(option))
    assert not undocumented, f"values without a ## description: {sorted(set(undocumented))}"
    assert not unschematised, f"values the schema does not cover: {unschematised}"
    # ...and the other way round: every option the schema declares is in values.yaml.
    def declared(schema_node, path=()):
        for key, child in schema_node.get("properties", {}).items():
            if not _is_data(child):
                yield from declared(child, (*path, key))
            else:
                yield (*path, key)
    missing = [".".join(p) for p in declared(schema) if not _has(values, p)]
    assert not missing, f"schema options missing from values.yaml: {missing}"


def _is_data(schema_node) -> bool:
    return "properties" not in schema_node or schema_node.get("$comment", "").startswith("Kubernetes type")


def _has(values, path):
    for key in path:
        if not isinstance(values, dict) or key not in values:
            return False
        values = values[key]
    return True


def test_cluster_wide_by_default_namespaced_on_request():
    assert "ClusterRole" in kinds(render()) and "Role" not in kinds(render())
    scoped = render(files=scenario("namespaced-rbac"))
    assert kinds(scoped).count("Role") == 2 and "ClusterRole" not in kinds(scoped)
    assert {r["metadata"]["namespace"] for r in scoped if r["kind"] == "Role"} == {"team-a", "team-b"}
    operator = container(find(scoped, "Deployment", "ms-operator"))
    assert {"--namespace=team-a", "--namespace=team-b"} <= set(operator["args"])


def test_least_privilege_and_locked_down_pods():
    documents = render("mlflow.credentialsSecret=mlflow-creds", "imagePullSecrets={regcred}")
    role = find(documents, "ClusterRole")
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert "*" not in verbs and not any("*" in rule["resources"] for rule in role["rules"])
    assert not any(r in rule["resources"] for rule in role["rules"] for r in ("secrets", "configmaps", "namespaces", "customresourcedefinitions"))
    templates = pod_templates(documents)
    assert {name for name, _ in templates} == {"ms-operator", "ms-mlflow", "ms-postgresql"}
    for name, template in templates:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["imagePullSecrets"] == [{"name": "regcred"}], name
        for c in pod["containers"]:
            assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}, name
        if name != "ms-operator":
            assert pod["automountServiceAccountToken"] is False, name
    assert find(documents, "StatefulSet")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 999
    operator = container(find(documents, "Deployment", "ms-operator"))
    assert operator["envFrom"] == [{"secretRef": {"name": "mlflow-creds"}}]
    # Credentials arrive only through Secrets; no token, password or key is set literally.
    for _, template in templates:
        for c in template["spec"]["containers"]:
            for name, value in env_of(c).items():
                if any(word in name for word in ("TOKEN", "PASSWORD", "ACCESS_KEY", "SECRET_KEY")):
                    assert isinstance(value, dict) or name.endswith("_FILE"), name


def test_security_context_values_merge_over_the_restricted_default():
    documents = render("podSecurityContext.runAsUser=2000", "mlflow.containerSecurityContext.readOnlyRootFilesystem=false")
    mlflow = find(documents, "Deployment", "ms-mlflow")["spec"]["template"]["spec"]
    assert mlflow["securityContext"]["runAsUser"] == 2000 and mlflow["securityContext"]["runAsNonRoot"] is True
    assert mlflow["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False
    assert mlflow["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # PostgreSQL keeps its own user over the chart-wide one.
    assert find(documents, "StatefulSet")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 999


def test_names_and_labels_follow_the_overrides():
    documents = render("fullnameOverride=platform", "nameOverride=mlops", "commonLabels.team=ml")
    for document in documents:
        assert document["metadata"]["name"].startswith("platform"), document["metadata"]["name"]
        assert document["metadata"]["labels"]["team"] == "ml" and document["metadata"]["labels"]["app.kubernetes.io/name"] == "mlops"
    for name, template in pod_templates(documents):
        workload = find(documents, "Deployment" if name != "platform-postgresql" else "StatefulSet", name)
        # Selectors carry neither the version nor commonLabels, so upgrades never orphan pods.
        assert "team" not in workload["spec"]["selector"]["matchLabels"]
        assert selects(workload["spec"]["selector"], template["metadata"]["labels"])
    assert env_of(container(find(documents, "Deployment", "platform-operator")))["MLFLOW_TRACKING_URI"] == "http://platform-mlflow.modelship-system.svc:5000"


def test_mlflow_with_postgresql_by_default():
    documents = render()
    operator = env_of(container(find(documents, "Deployment", "ms-operator")))
    mlflow = find(documents, "Deployment", "ms-mlflow")
    service = find(documents, "Service", "ms-mlflow")
    # The operator (and through it every training and serving pod) uses the chart's MLflow Service.
    assert operator["MLFLOW_TRACKING_URI"] == f"http://ms-mlflow.modelship-system.svc:{service['spec']['ports'][0]['port']}"
    assert selects({"matchLabels": service["spec"]["selector"]}, mlflow["spec"]["template"]["metadata"]["labels"])
    server = container(mlflow)
    assert server["command"] == ["mlflow", "server"]
    assert {"--serve-artifacts", "--artifacts-destination=/mlflow/artifacts", "--host=0.0.0.0", "--port=5000"} <= set(server["args"])
    allowed = next(a for a in server["args"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert "ms-mlflow.modelship-system.svc:*" in allowed and "*" not in allowed
    env = env_of(server)
    # The DSN names the database but holds no password: libpq takes it from PGPASSWORD (a Secret).
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://mlflow@ms-postgresql:5432/mlflow"
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "ms-postgresql", "key": "password"}}
    claim = find(documents, "PersistentVolumeClaim", "ms-mlflow")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in mlflow["spec"]["template"]["spec"]["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"]["claimName"] == "ms-mlflow"
    assert {"name": "artifacts", "mountPath": "/mlflow/artifacts"} in server["volumeMounts"]

    postgres = find(documents, "StatefulSet", "ms-postgresql")
    pg = container(postgres)
    pg_env = env_of(pg)
    assert (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"]) == ("mlflow", "mlflow")
    secret = find(documents, "Secret", "ms-postgresql")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) == 40 and password.isalnum()
    mounted = next(v for v in postgres["spec"]["template"]["spec"]["volumes"] if v["name"] == "secret")["secret"]
    assert mounted["secretName"] == "ms-postgresql" and pg_env["POSTGRES_PASSWORD_FILE"].endswith("/" + mounted["items"][0]["path"])
    assert postgres["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    # Nothing generated comes from values: two renders (no live Secret to look up) differ.
    assert find(render(), "Secret", "ms-postgresql")["data"] != secret["data"]
    assert selects({"matchLabels": find(documents, "Service", "ms-postgresql")["spec"]["selector"]}, postgres["spec"]["template"]["metadata"]["labels"])


def test_external_mlflow():
    documents = render(files=scenario("external-mlflow"))
    assert not [d for d in documents if "mlflow" in d["metadata"]["name"] or "postgresql" in d["metadata"]["name"]]
    assert "StatefulSet" not in kinds(documents) and "PersistentVolumeClaim" not in kinds(documents)
    operator = container(find(documents, "Deployment", "ms-operator"))
    assert env_of(operator)["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert operator["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]


def test_external_database_and_s3_artifacts():
    documents = render(files=scenario("external-database"))
    assert "StatefulSet" not in kinds(documents) and "PersistentVolumeClaim" not in kinds(documents)
    server = container(find(documents, "Deployment", "ms-mlflow"))
    env = env_of(server)
    assert env["MLFLOW_BACKEND_STORE_URI"] == {"secretKeyRef": {"name": "mlflow-database", "key": "uri"}} and "PGPASSWORD" not in env
    assert "--artifacts-destination=s3://models/mlflow" in server["args"] and env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert server["envFrom"] == [{"secretRef": {"name": "mlflow-s3"}}]
    assert "volumeMounts" not in server or all(m["name"] != "artifacts" for m in server["volumeMounts"])


def test_webhook_token_generated_mounted_and_passed_by_path():
    documents = render()
    secret = find(documents, "Secret", "ms-webhook-token")
    assert len(base64.b64decode(secret["data"]["token"])) == 40
    deployment = find(documents, "Deployment", "ms-operator")
    operator = container(deployment)
    token_file = env_of(operator)["MODELSHIP_ALERT_TOKEN_FILE"]
    mount = next(m for m in operator["volumeMounts"] if token_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "ms-webhook-token" and token_file.endswith("/" + volume["secret"]["items"][0]["path"])
    assert volume["secret"]["items"][0]["key"] == "token" and mount["readOnly"] is True
    own = render("operator.webhook.existingSecret=my-token")
    assert "ms-webhook-token" not in [d["metadata"]["name"] for d in own if d["kind"] == "Secret"]
    volumes = find(own, "Deployment", "ms-operator")["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("secret", {}).get("secretName") == "my-token" for v in volumes)


def test_operator_service_and_service_monitor():
    documents = render(files=scenario("monitoring"))
    deployment = find(documents, "Deployment", "ms-operator")
    service = find(documents, "Service", "ms-operator")
    assert selects({"matchLabels": service["spec"]["selector"]}, deployment["spec"]["template"]["metadata"]["labels"])
    monitor = find(documents, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    # The milestone gauges' `namespace` is the ModelDeployment's, not the operator pod's.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["modelship-system"]} and monitor["metadata"]["labels"]["release"] == "kps"
    assert "ServiceMonitor" not in kinds(render())


def test_prometheus_for_the_analysis_and_the_prediction_store_secret_only_when_set():
    defaults = env_of(container(find(render(), "Deployment", "ms-operator")))
    assert "MODELSHIP_PROMETHEUS_URL" not in defaults and "MODELSHIP_PREDICTION_STORE_SECRET" not in defaults
    assert defaults["MODELSHIP_WORKERS"] == str(OperatorConfig.workers)  # the chart's default is the operator's
    monitoring = env_of(container(find(render(files=scenario("monitoring")), "Deployment", "ms-operator")))
    assert monitoring["MODELSHIP_PROMETHEUS_URL"] == "http://kps-prometheus.monitoring:9090"
    store = env_of(container(find(render("operator.predictionStoreSecret=prediction-store"), "Deployment", "ms-operator")))
    assert store["MODELSHIP_PREDICTION_STORE_SECRET"] == "prediction-store"
    bad = helm("template", "ms", str(CHART), "--kube-version", KUBE_VERSION, "--set", "operator.prometheusUrl=prometheus:9090", check=False)
    assert bad.returncode != 0 and "prometheusUrl" in bad.stderr


def test_gateway_the_routes_attach_to_and_the_endpoints_derived_from_it():
    documents = render(files=scenario("gateway"))
    gateway = find(documents, "Gateway")
    listener = gateway["spec"]["listeners"][0]
    assert gateway["spec"]["gatewayClassName"] == "eg" and listener["hostname"] == "models.example.com"
    assert listener["allowedRoutes"]["namespaces"] == {"from": "All"}
    env = env_of(container(find(documents, "Deployment", "ms-operator")))
    assert env["MODELSHIP_GATEWAY"] == f"modelship-system/{gateway['metadata']['name']}"
    assert env["MODELSHIP_ENDPOINT_BASE_URL"] == "http://models.example.com"
    https = render("gateway.listener.protocol=HTTPS", "gateway.listener.port=8443", "gateway.listener.tlsSecretName=models-tls", "operator.watchNamespaces={team-a}", files=scenario("gateway"))
    listener = find(https, "Gateway")["spec"]["listeners"][0]
    assert listener["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "models-tls"}]
    assert listener["allowedRoutes"]["namespaces"]["selector"]["matchExpressions"][0]["values"] == ["team-a"]
    assert env_of(container(find(https, "Deployment", "ms-operator")))["MODELSHIP_ENDPOINT_BASE_URL"] == "https://models.example.com:8443"
    # Without the chart's Gateway: the one named in values, and the URL given (or the default).
    plain = env_of(container(find(render("gateway.ref=edge/public", "gateway.endpointBaseUrl=https://ml.example.org/"), "Deployment", "ms-operator")))
    assert (plain["MODELSHIP_GATEWAY"], plain["MODELSHIP_ENDPOINT_BASE_URL"]) == ("edge/public", "https://ml.example.org")
    assert "Gateway" not in kinds(render())


def _serving_pod():
    from modelship.api import ModelDeployment
    from modelship.operator import builders
    from modelship.operator.config import OperatorConfig

    resource = ModelDeployment.model_validate(yaml.safe_load((REPO / "manifests" / "samples" / "diabetes-builtin.yaml").read_text()))
    resource.metadata.uid = "uid-1"
    return builders.serving_deployment(resource, OperatorConfig(), "3", "champion")["spec"]["template"]


def test_network_policies_admit_only_the_intended_peers():
    assert "NetworkPolicy" not in kinds(render())
    documents = render(files=scenario("network-policies"))
    policies = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in documents if p["kind"] == "NetworkPolicy"}
    assert set(policies) == {("modelship-system", "ms-operator"), ("modelship-system", "ms-mlflow"), ("modelship-system", "ms-postgresql"), ("team-a", "ms-model-servers"), ("team-b", "ms-model-servers")}
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress"] and len(spec["ingress"]) == 1
    pods = {name: template["metadata"]["labels"] for name, template in pod_templates(documents)}
    serving = _serving_pod()
    # Each policy selects exactly its component's pods.
    assert [n for n, labels in pods.items() if selects(policies[("modelship-system", "ms-operator")]["podSelector"], labels)] == ["ms-operator"]
    assert [n for n, labels in pods.items() if selects(policies[("modelship-system", "ms-mlflow")]["podSelector"], labels)] == ["ms-mlflow"]
    assert [n for n, labels in pods.items() if selects(policies[("modelship-system", "ms-postgresql")]["podSelector"], labels)] == ["ms-postgresql"]
    model_servers = policies[("team-a", "ms-model-servers")]
    assert selects(model_servers["podSelector"], serving["metadata"]["labels"])
    assert model_servers["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert "http" in {p["name"] for p in serving["spec"]["containers"][0]["ports"]}
    peers = model_servers["ingress"][0]["from"]
    assert [p["namespaceSelector"]["matchLabels"] for p in peers] == [{"kubernetes.io/metadata.name": "envoy-gateway-system"}, {"kubernetes.io/metadata.name": "monitoring"}]
    operator_peers = policies[("modelship-system", "ms-operator")]["ingress"][0]["from"]
    assert [p["podSelector"]["matchLabels"] for p in operator_peers] == [{"app.kubernetes.io/name": "alertmanager"}, {"app.kubernetes.io/name": "prometheus"}]
    # MLflow: the operator, and training/serving pods (labelled by the operator's builders) anywhere.
    mlflow_from = policies[("modelship-system", "ms-mlflow")]["ingress"][0]["from"]
    assert any(selects(p["podSelector"], pods["ms-operator"]) and "namespaceSelector" not in p for p in mlflow_from)
    assert any(selects(p["podSelector"], serving["metadata"]["labels"]) and p.get("namespaceSelector") == {} for p in mlflow_from)
    assert not any(selects(p["podSelector"], pods["ms-postgresql"]) for p in mlflow_from)
    # PostgreSQL: MLflow only.
    pg_from = policies[("modelship-system", "ms-postgresql")]["ingress"][0]["from"]
    assert [n for n, labels in pods.items() if any(selects(p["podSelector"], labels) for p in pg_from)] == ["ms-mlflow"]
    assert not any(selects(p["podSelector"], serving["metadata"]["labels"]) for p in pg_from)


@pytest.mark.parametrize("values", SCENARIOS, ids=SCENARIO_IDS)
def test_every_scenario_is_accepted_by_the_api_server(cluster, values):
    for namespace in ("modelship-system", "team-a", "team-b"):
        cluster.kubectl("create", "namespace", namespace, check=False)
    documents = render(files=(values,), crds=True)
    # Forced: an earlier test may have installed the CRD with Helm, which then owns its fields.
    result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(documents), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(documents)


def test_monitoring_objects_only_on_request_with_the_generated_rules():
    from modelship.monitoring.rules import rule_groups

    assert not {"PrometheusRule", "PodMonitor", "ConfigMap", "ServiceMonitor"} & set(kinds(render()))
    documents = render("monitoring.prometheusRule.enabled=true", "monitoring.prometheusRule.labels.release=kps", "monitoring.podMonitor.enabled=true")
    rule = find(documents, "PrometheusRule")
    # Included untemplated: Prometheus gets the alerts' {{ $labels.* }} templates as generated.
    assert rule["spec"] == rule_groups() and rule["metadata"]["labels"]["release"] == "kps"
    assert find(documents, "PodMonitor")["spec"]["namespaceSelector"] == {"any": True}
    scoped = find(render("monitoring.podMonitor.enabled=true", "operator.watchNamespaces={team-a,team-b}"), "PodMonitor")
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_pod_monitor_selects_the_pods_the_operator_builds():
    pod = _serving_pod()
    monitor = find(render("monitoring.podMonitor.enabled=true"), "PodMonitor")
    assert selects(monitor["spec"]["selector"], pod["metadata"]["labels"])
    ports = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports
    assert set(monitor["spec"]["podTargetLabels"]) <= set(pod["metadata"]["labels"])


def test_dashboards_for_the_grafana_sidecar():
    from modelship.monitoring.dashboards import DASHBOARD_FILE

    maps = [d for d in render("monitoring.grafanaDashboards.enabled=true") if d["kind"] == "ConfigMap"]
    assert len(maps) == len(DASHBOARD_FILE.outputs)
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    committed = (REPO / DASHBOARD_FILE.outputs[0]).read_text()
    # Included untemplated: the panels' {{version}} legends reach Grafana as generated.
    assert json.loads(maps[0]["data"][DASHBOARD_FILE.outputs[0].name]) == json.loads(committed)
    relabelled = render("monitoring.grafanaDashboards.enabled=true", "monitoring.grafanaDashboards.sidecarLabel=dashboards", "monitoring.grafanaDashboards.sidecarLabelValue=modelship")
    assert find(relabelled, "ConfigMap")["metadata"]["labels"]["dashboards"] == "modelship"
