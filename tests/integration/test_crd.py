"""The generated CRD against a real API server: it installs, `kubectl explain` shows the model
descriptions, every sample is accepted, and the invalid table is rejected naming the field —
the CEL twins of the pydantic rules held to the same cases."""

from __future__ import annotations

import pytest
import yaml

from spec_cases import INVALID, REPO, SAMPLES

CRD = REPO / "manifests" / "crds" / "modelship.io_modeldeployments.yaml"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crd(cluster):
    cluster.apply(CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelship.io", "--timeout=60s")
    return cluster


def test_explain_shows_the_model_descriptions(crd):
    # The API server publishes a new CRD's OpenAPI a moment after it is Established.
    out = crd.wait_until("the CRD in the OpenAPI document", lambda: crd.kubectl("explain", "modeldeployment.spec.rollout").stdout, timeout=60)
    assert "Rollout of new versions." in out
    for field in ("strategy", "canary", "analysis", "abTest", "mirror", "approval"):
        assert field in out
    steps = crd.kubectl("explain", "mdep.spec.rollout.canary.steps").stdout
    assert "Weights that strictly increase and end at 100." in steps


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_sample_is_accepted_and_defaulted(crd, namespace, sample):
    document = yaml.safe_load(sample.read_text())
    document["metadata"]["namespace"] = namespace
    crd.kubectl("apply", "--validate=strict", "-f", "-", input=yaml.safe_dump(document))
    stored = crd.kubectl_json("get", "mdep", document["metadata"]["name"], "-n", namespace)
    # The API server filled the defaults the models declare.
    assert stored["spec"]["rollout"]["analysis"]["failureThreshold"] == 2
    assert stored["spec"]["serving"]["maxRecordsPerRequest"] == 1000
    assert stored["spec"]["monitoring"]["drift"]["windowSize"] >= 50


def test_minimal_spec_gets_every_default(crd, namespace):
    minimal = {
        "apiVersion": "modelship.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "minimal", "namespace": namespace},
        "spec": {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}},
    }
    crd.kubectl("apply", "-f", "-", input=yaml.safe_dump(minimal))
    spec = crd.kubectl_json("get", "mdep", "minimal", "-n", namespace)["spec"]
    from modelship.api import ModelDeploymentSpec

    # Every default the models declare, the API server fills in with the same value (empty
    # collections aside: the server leaves those out).
    assert _leaves(spec) == _leaves(ModelDeploymentSpec.model_validate(minimal["spec"]).to_wire())


def _leaves(node, path=""):
    if isinstance(node, dict):
        return {k: v for key, child in node.items() for k, v in _leaves(child, f"{path}.{key}").items()}
    if node == [] or node == {}:
        return {}
    return {path: node}


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_spec_is_rejected_by_the_api_server(crd, namespace, case):
    resource = case.base()
    case.mutate(resource)
    resource["metadata"]["namespace"] = namespace
    result = crd.kubectl("apply", "--validate=strict", "--dry-run=server", "-f", "-", input=yaml.safe_dump(resource), check=False)
    assert result.returncode != 0, f"accepted: {case.id}"
    assert case.api_message in result.stderr, result.stderr
    assert case.api_path in result.stderr, result.stderr


def test_printer_columns(crd, namespace):
    sample = yaml.safe_load((REPO / "manifests/samples/diabetes-builtin.yaml").read_text())
    sample["metadata"]["namespace"] = namespace
    crd.kubectl("apply", "-f", "-", input=yaml.safe_dump(sample))
    header = crd.kubectl("get", "mdep", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "CHAMPION", "CANARY", "CANARY-WEIGHT", "STEP", "READY", "DRIFT", "AGE"]
