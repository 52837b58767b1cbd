"""Upgrading an installed CRD: Helm creates the chart's crds/ on install and never again, so
`modelship crd --apply` (server-side apply) is the upgrade path. On the real API server: the
previous CRD (the current one without a field and a printer column, created as `helm install`
creates it), a resource stored under it, then the upgrade."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelship.api.crd import FIELD_MANAGER, render_crd

pytestmark = pytest.mark.integration
NAME = "modeldeployments.modelship.io"


def previous_crd() -> dict:
    """What an older chart shipped: no spec.serving.maxRecordsPerRequest, no Drift column."""
    crd = copy.deepcopy(render_crd())
    version = crd["spec"]["versions"][0]
    serving = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["serving"]
    del serving["properties"]["maxRecordsPerRequest"]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["serving"].get("default", {}).pop("maxRecordsPerRequest", None)
    for node in _walk(version["schema"]["openAPIV3Schema"]["properties"]["spec"]):
        if isinstance(node.get("default"), dict) and isinstance(node["default"].get("serving"), dict):
            node["default"]["serving"].pop("maxRecordsPerRequest", None)
    version["additionalPrinterColumns"] = [c for c in version["additionalPrinterColumns"] if c["name"] != "Drift"]
    return crd


def _walk(node):
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from _walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from _walk(child)


def modelship(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "modelship"), *args], capture_output=True, text=True, timeout=120)


def resource(namespace: str, name: str, serving: dict) -> str:
    return yaml.safe_dump({
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}, "serving": serving},
    })


@pytest.fixture
def previous(cluster):
    """The previous CRD in place of whatever the session had (replaced, not deleted: deleting
    would delete every stored resource); the current one again afterwards."""
    exists = cluster.kubectl("get", "crd", NAME, check=False).returncode == 0
    cluster.kubectl("replace" if exists else "create", "-f", "-", input=yaml.safe_dump(previous_crd()))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=60s")
    try:
        yield cluster
    finally:
        cluster.apply(yaml.safe_dump(render_crd()), server_side=True)
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=60s")


def test_crd_apply_upgrades_the_installed_crd_and_keeps_the_resources(previous, namespace):
    cluster = previous
    # Under the previous CRD the field does not exist: strict validation refuses it.
    refused = cluster.kubectl("apply", "--validate=strict", "--dry-run=server", "-f", "-", input=resource(namespace, "new", {"maxRecordsPerRequest": 50}), check=False)
    assert refused.returncode != 0 and "maxRecordsPerRequest" in refused.stderr
    cluster.kubectl("apply", "-f", "-", input=resource(namespace, "old", {"replicas": 2}))

    result = modelship("crd", "--apply", "--kubeconfig", str(cluster.kubeconfig))
    assert result.returncode == 0, result.stderr
    assert f"applied customresourcedefinition {NAME}" in result.stdout
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=60s")

    stored = cluster.kubectl_json("get", "crd", NAME, "--show-managed-fields")
    assert _differences(stored["spec"], render_crd()["spec"]) == []
    assert "Drift" in [c["name"] for c in stored["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert any(m["manager"] == FIELD_MANAGER and m["operation"] == "Apply" for m in stored["metadata"]["managedFields"])
    # The new field is accepted now, and defaulted on the resource stored before the upgrade.
    cluster.wait_until("the upgraded schema served", lambda: cluster.kubectl("apply", "--validate=strict", "-f", "-", input=resource(namespace, "new", {"maxRecordsPerRequest": 50}), check=False).returncode == 0, timeout=60)
    assert cluster.kubectl_json("get", "mdep", "new", "-n", namespace)["spec"]["serving"]["maxRecordsPerRequest"] == 50
    old = cluster.kubectl_json("get", "mdep", "old", "-n", namespace)
    assert old["spec"]["serving"]["replicas"] == 2 and old["spec"]["serving"]["maxRecordsPerRequest"] == 1000
    # Applying again changes nothing.
    generation = stored["metadata"]["generation"]
    assert modelship("crd", "--apply", "--kubeconfig", str(cluster.kubeconfig)).returncode == 0
    assert cluster.kubectl_json("get", "crd", NAME)["metadata"]["generation"] == generation


def _differences(stored, generated, path="spec") -> list[str]:
    """Where the stored CRD lacks or differs from what we generate (the API server adds defaults
    of its own and omits zero values; neither is a difference)."""
    if isinstance(generated, dict):
        if not isinstance(stored, dict):
            return [path]
        return [d for key, value in generated.items() for d in (_differences(stored[key], value, f"{path}.{key}") if key in stored else [] if value in (0, False, None) else [f"{path}.{key}"])]
    if isinstance(generated, list):
        if not isinstance(stored, list) or len(stored) != len(generated):
            return [path]
        return [d for i, (s, g) in enumerate(zip(stored, generated)) for d in _differences(s, g, f"{path}[{i}]")]
    return [] if stored == generated else [f"{path}: {stored!r} != {generated!r}"]


def test_crd_apply_names_a_missing_kubeconfig(tmp_path):
    result = modelship("crd", "--apply", "--kubeconfig", str(tmp_path / "nope"))
    assert result.returncode != 0 and "nope" in (result.stderr + result.stdout)
