"""ModelDeployment manifests for the tests and benchmarks that apply them to a real API server."""

from __future__ import annotations

from typing import Any

DIABETES = {"uri": "builtin:sklearn/diabetes", "target": "target"}


def model_deployment(name: str, namespace: str, *, task: str = "regression", dataset: dict | None = None, **spec: Any) -> dict:
    """A ModelDeployment of `task` on `dataset` (scikit-learn's diabetes set unless given); every
    other keyword is a top-level spec field (`training`, `serving`, `rollout`, `monitoring`...)."""
    return {
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": task, "dataset": dataset or DIABETES, **spec},
    }
