"""The kind path (hack/kind/, the Tiltfile, the workflow) cannot run here (no Docker), so it is
held to the chart instead: shellcheck-clean scripts, values that exist in values.schema.json,
and names and ports that agree across the kind config, the gateway class, the images built and
the chart's values; the chart rendered with them is accepted by the real API server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from urllib.parse import urlparse

import pytest
import yaml

from helmchart import leaf_paths, CHART, REPO, find, render

pytestmark = pytest.mark.integration
KIND = REPO / "hack" / "kind"
VALUES = KIND / "values.yaml"


def test_scripts_are_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: hack/setup.sh --test installs it (Debian package shellcheck)"
    scripts = sorted(KIND.glob("*.sh"))
    assert {p.name for p in scripts} >= {"up.sh", "down.sh", "cluster.sh", "predict.sh"}
    result = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True, text=True, cwd=KIND)
    assert result.returncode == 0, result.stdout


def _set_flags() -> list[str]:
    """Every `--set k=v` in the scripts and every `set=[...]` item in the Tiltfile."""
    flags = []
    for script in [*KIND.glob("*.sh"), REPO / "Makefile"]:
        flags += re.findall(r"--set(?:-string)?[ =]([^\s\\]+)", script.read_text())
    for match in re.findall(r"set=\[([^\]]*)\]", (REPO / "Tiltfile").read_text()):
        flags += re.findall(r"'([^']+)'", match)
    return flags


def test_every_value_the_kind_path_sets_is_in_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    paths = [p for p in leaf_paths(yaml.safe_load(VALUES.read_text()))]
    paths += [tuple(flag.split("=", 1)[0].split(".")) for flag in _set_flags()]
    for path in paths:
        node = schema
        for key in path:
            if "properties" not in node:
                break  # a map of the user's keys (labels) or a Kubernetes object
            assert key in node["properties"], f"{'.'.join(path)} (hack/kind) is not a chart value"
            node = node["properties"][key]
    # The scripts and the Tiltfile install with this file.
    assert "-f hack/kind/values.yaml" in (KIND / "up.sh").read_text()
    assert "values=['hack/kind/values.yaml']" in (REPO / "Tiltfile").read_text()


def test_names_and_ports_agree():
    values = yaml.safe_load(VALUES.read_text())
    kind_config = yaml.safe_load((KIND / "kind-config.yaml").read_text())
    proxy, gateway_class = yaml.safe_load_all((KIND / "gateway.yaml").read_text())
    mapping = kind_config["nodes"][0]["extraPortMappings"][0]
    patched_port = proxy["spec"]["provider"]["kubernetes"]["envoyService"]["patch"]["value"]["spec"]["ports"][0]
    # The Gateway's listener → the proxy Service's NodePort → kind's host port → the endpoint URL.
    assert values["gateway"]["className"] == gateway_class["metadata"]["name"]
    assert gateway_class["spec"]["parametersRef"]["name"] == proxy["metadata"]["name"]
    assert patched_port["port"] == values["gateway"]["listener"]["port"]
    assert patched_port["nodePort"] == mapping["containerPort"]
    endpoint = urlparse(values["gateway"]["endpointBaseUrl"])
    assert endpoint.port == mapping["hostPort"] and endpoint.hostname in ("localhost", mapping["listenAddress"])
    assert f"http://localhost:{mapping['hostPort']}" in (KIND / "predict.sh").read_text()
    # The images up.sh builds and the Tiltfile builds are the ones the values name.
    up = (KIND / "up.sh").read_text()
    built = {f"modelship-{name}" for name in re.findall(r"(\w+):[\w-]+/Dockerfile", up)}
    tilt = set(re.findall(r"docker_build\('([^']+)'", (REPO / "Tiltfile").read_text()))
    named = {values["operator"]["image"]["repository"], values["mlflow"]["image"]["repository"],
             values["workloads"]["trainingImage"].split(":")[0], values["workloads"]["servingImage"].split(":")[0]}
    assert built == tilt == named
    for dockerfile in re.findall(r"\w+:([\w-]+/Dockerfile)", up):
        assert (REPO / dockerfile).exists(), dockerfile
    # Prometheus from kube-prometheus-stack selects monitors and rules by its release label.
    assert "upgrade --install kps " in (KIND / "cluster.sh").read_text()
    for kind in ("prometheusRule", "podMonitor", "serviceMonitor"):
        assert values["monitoring"][kind] == {"enabled": True, "labels": {"release": "kps"}}


def test_the_chart_with_the_kind_values_is_accepted_by_the_api_server(cluster):
    cluster.kubectl("create", "namespace", "modelship-system", check=False)
    documents = render(files=(VALUES,), release="modelship", crds=True)
    operator = find(documents, "Deployment", "modelship-operator")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELSHIP_GATEWAY"] == "modelship-system/modelship-gateway" and env["MODELSHIP_ENDPOINT_BASE_URL"] == "http://localhost:8000"
    assert env["MLFLOW_TRACKING_URI"] == "http://modelship-mlflow.modelship-system.svc:5000"
    # Forced: an earlier test may have installed the CRD with Helm, which then owns its fields.
    result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(documents), check=False)
    assert result.returncode == 0, result.stderr
