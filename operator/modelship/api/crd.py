"""Generates the ModelDeployment CRD from the pydantic models, so the schema has one home.

pydantic writes JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3.0
schema: every node typed, no ``$ref``/``anyOf``, ``exclusiveMinimum`` as a flag, free-form
objects marked ``x-kubernetes-preserve-unknown-fields``. ``structural_schema`` does that
translation; ``render_crd`` adds the CRD around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelship import generated
from modelship.api import v1alpha1 as api
from modelship.api.base import cel

#: Where ``modelship crd --write`` puts the generated file, relative to the repository root.
CRD_FILENAME = f"{api.GROUP}_{api.PLURAL}.yaml"
CRD_OUTPUTS = (Path("manifests/crds") / CRD_FILENAME, Path("charts/modelship/crds") / CRD_FILENAME)

#: The keys kept, in the order they are written (people read the YAML too).
_ORDER = (
    "type", "description", "enum", "default", "format", "pattern", "minLength", "maxLength",
    "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minItems", "maxItems", "minProperties", "required",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
)


def structural_schema(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Translate one pydantic JSON-Schema node (and everything below it) to structural form."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}  # the field's own description and default win over the model's
    if "anyOf" in node:
        if node.get("x-kubernetes-int-or-string"):
            node.pop("anyOf")
        else:
            options = [option for option in node.pop("anyOf") if option.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"a structural schema cannot express anyOf {options}")
            return structural_schema({**options[0], **node}, defs)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "exclusiveMinimum" in node:
        node["minimum"], node["exclusiveMinimum"] = node["exclusiveMinimum"], True
    if "exclusiveMaximum" in node:
        node["maximum"], node["exclusiveMaximum"] = node["exclusiveMaximum"], True

    if node.get("default", "") is None:
        del node["default"]  # "no value" is absence in Kubernetes; a null default is rejected
    out = {key: node[key] for key in _ORDER if key in node}
    if out.get("x-kubernetes-int-or-string"):
        return {key: out[key] for key in ("description", "pattern", "x-kubernetes-int-or-string") if key in out}
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("type", "object")
        return out
    if "properties" in node:
        out["type"] = "object"
        required = set(node.get("required", []))
        out["properties"] = {}
        for name, child in node["properties"].items():
            schema = structural_schema(child, defs)
            # An optional nested object that is not nullable was declared with a factory default.
            # Its default is spelled out in full (the children's defaults), because the API
            # server checks a default against the object's CEL rules before filling it in.
            nullable = any(option.get("type") == "null" for option in child.get("anyOf", []))
            if schema.get("type") == "object" and "properties" in schema and name not in required and not nullable and "default" not in schema:
                schema["default"] = {key: value["default"] for key, value in schema["properties"].items() if "default" in value}
            out["properties"][name] = schema
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = structural_schema(node["additionalProperties"], defs)
    if "items" in node:
        out["items"] = structural_schema(node["items"], defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if not out.get("required"):
        out.pop("required", None)
    return out


def model_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural_schema(raw, raw.get("$defs", {}))


def _ready_column(condition: str, name: str) -> dict[str, Any]:
    return {"name": name, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status'}


def render_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object for ModelDeployment."""
    spec_schema = model_schema(api.ModelDeploymentSpec)
    status_schema = model_schema(api.ModelDeploymentStatus)
    conditions = status_schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions["maxItems"] = 16
    root = {
        "type": "object",
        "description": api.ModelDeployment.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            cel(
                f"size(self.metadata.name) <= {api.MAX_NAME_LENGTH}",
                f"metadata.name must be at most {api.MAX_NAME_LENGTH} characters so derived object names fit in 63",
            )
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelship"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": ["modelship", "ml"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Champion", "type": "string", "jsonPath": ".status.championVersion"},
                        {"name": "Canary", "type": "string", "jsonPath": ".status.canaryVersion"},
                        {"name": "Canary-Weight", "type": "integer", "jsonPath": ".status.canaryWeight", "priority": 0},
                        {"name": "Step", "type": "string", "jsonPath": ".status.rollout.step", "priority": 0},
                        # The API server shows the first match: the first challenger's verdict against the baseline.
                        {"name": "AB-Verdict", "type": "string", "jsonPath": ".status.rollout.variants[*].comparison.verdict", "priority": 1},
                        _ready_column("Ready", "Ready"),
                        _ready_column("DriftDetected", "Drift"),
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


CRD_FILE = generated.GeneratedFile("modelship crd", "modelship.api.v1alpha1", CRD_OUTPUTS, render_crd)

#: Who owns the CRD's fields after ``modelship crd --apply`` (server-side apply).
FIELD_MANAGER = "modelship"


def apply_crd(kubeconfig: str | None = None, context: str | None = None) -> dict[str, Any]:
    """Server-side apply of the generated CRD: how an installed CRD is upgraded, since Helm
    creates the chart's ``crds/`` on install and never touches them again. Conflicting owners
    (``helm install``'s create, an older ``kubectl apply``) are taken over. Needs the operator
    extra (the kubernetes client); uses the kubeconfig (or the pod's account in a cluster).
    Returns the stored CRD."""
    from kubernetes import client, config, dynamic
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except ConfigException:
        if kubeconfig or context:
            raise
        config.load_incluster_config()
    with client.ApiClient() as api_client:
        crds = dynamic.DynamicClient(api_client).resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
        return crds.server_side_apply(body=render_crd(), field_manager=FIELD_MANAGER, force_conflicts=True).to_dict()
