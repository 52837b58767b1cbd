"""The CRD is generated from the models: committed copies match, and the schema is structural."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from modelship.api.crd import CRD_FILE, CRD_OUTPUTS, render_crd

REPO = Path(__file__).resolve().parents[3]


def test_committed_crd_matches_the_models():
    assert CRD_FILE.stale(REPO) == [], "run `modelship crd --write` and commit the result"
    for relative in CRD_OUTPUTS:
        assert (REPO / relative).read_text() == CRD_FILE.text()


def _walk(node, path="root"):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schema():
    return render_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_schema_is_structural():
    for path, node in _walk(_schema()):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node and "oneOf" not in node, path
        assert node.get("type") or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        assert node.get("default", "") is not None, f"{path} has a null default"
        assert node.get("additionalProperties") is not False, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_every_spec_field_is_described():
    for path, node in _walk(_schema()["properties"]["spec"], "spec"):
        if not path.endswith(("[]", "{}")):  # named fields; scalar list items need no words
            assert node.get("description"), f"{path} has no description (kubectl explain shows it)"


def test_cross_field_rules_reach_the_api_server():
    text = CRD_FILE.text()
    for message in (
        "canary step weights must strictly increase",
        "A/B variant weights must sum to 100",
        "maxTrials is only allowed with random search",
        "qualityGate.metric must suit the task",
    ):
        assert message in text


def test_nested_defaults_are_applied_by_the_server():
    spec = _schema()["properties"]["spec"]["properties"]
    from modelship.api.v1alpha1 import RolloutSpec

    assert spec["rollout"]["default"] == RolloutSpec().to_wire()
    assert spec["rollout"]["properties"]["canary"]["properties"]["steps"]["default"][-1]["weight"] == 100
    assert "default" not in spec["rollout"]["properties"]["abTest"]


def test_printer_columns_and_status_subresource():
    version = render_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Champion", "Canary", "Canary-Weight", "Step", "AB-Verdict", "Ready", "Drift", "Age"]
    assert render_crd()["spec"]["names"]["shortNames"] == ["mdep"]


def test_cli_prints_the_same_crd():
    out = subprocess.run([sys.executable, "-m", "modelship.cli_main", "crd"], capture_output=True, text=True, check=True).stdout
    assert yaml.safe_load(out) == render_crd()
