"""The Helm chart as tests use it: the pinned helm binary (built by hack/test-cluster/build.sh),
rendering with values, and lookups in what it renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelship"
SCENARIOS = sorted(CHART.glob("ci/*-values.yaml"))
KUBE_VERSION = "1.36.0"

sys.path.insert(0, str(REPO / "hack" / "test-cluster"))
import testcluster  # noqa: E402


def helm_bin() -> Path:
    return testcluster.Toolchain.from_cache().require().helm


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(helm_bin()), *args] + (["--kubeconfig", str(kubeconfig)] if kubeconfig else [])
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def value_args(*sets: str, files: tuple[Path, ...] = ()) -> list[str]:
    args = []
    for path in files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


def render(*sets: str, files: tuple[Path, ...] = (), namespace: str = "modelship-system", release: str = "ms", crds: bool = False) -> list[dict[str, Any]]:
    """``helm template`` → the rendered objects (without the CRD unless ``crds``)."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, *value_args(*sets, files=files)]
    if crds:
        args.append("--include-crds")
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def find(documents: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{len(matches)} {kind} {name or ''} rendered: {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def kinds(documents: list[dict]) -> list[str]:
    return [d["kind"] for d in documents]


def container(workload: dict, name: str | None = None) -> dict:
    containers = workload["spec"]["template"]["spec"]["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def env_of(container_: dict) -> dict[str, Any]:
    """name → literal value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_.get("env", [])}


def pod_templates(documents: list[dict]) -> list[tuple[str, dict]]:
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in documents if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels + In/NotIn/Exists/DoesNotExist) matching ``labels``."""
    if not labels.items() >= selector.get("matchLabels", {}).items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def leaf_paths(node, path=()):
    """Key paths to every leaf of a values tree (an empty map counts as a leaf)."""
    if isinstance(node, dict) and node:
        for key, child in node.items():
            yield from leaf_paths(child, (*path, key))
    else:
        yield path
