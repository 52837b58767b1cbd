"""A PodMonitor (monitoring.coreos.com/v1) as the Prometheus scrape config the Prometheus
Operator generates from it, so the platform's plain Prometheus selects and labels exactly the
pods the chart's PodMonitor selects: the platform renders charts/modelship/templates/
podmonitor.yaml with helm and feeds it here, one source for both.

Follows the operator's ``generatePodScrapeConfig`` for the fields the chart uses: drop finished
pods, ``selector.matchLabels`` and ``matchExpressions`` (In, NotIn, Exists, DoesNotExist),
``namespaceSelector`` (``any``, ``matchNames``, or the monitor's own namespace), the endpoint's
``port``, the ``namespace``/``pod``/``container``/``endpoint``/``job`` target labels,
``podTargetLabels``, ``path`` and ``interval``. Anything else raises, naming the field.
"""

from __future__ import annotations

import re
from typing import Any

SUPPORTED_ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "scheme"}


def sanitize(name: str) -> str:
    """A Kubernetes label name as Prometheus spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _selector_relabelings(selector: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        out.append({"action": "keep", "source_labels": [f"__meta_kubernetes_pod_label_{sanitize(key)}", f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"],
                    "regex": f"({re.escape(value)});true"})
    for expr in selector.get("matchExpressions") or []:
        key, op, values = sanitize(expr["key"]), expr["operator"], expr.get("values") or []
        value_label, present = f"__meta_kubernetes_pod_label_{key}", f"__meta_kubernetes_pod_labelpresent_{key}"
        alternatives = "|".join(re.escape(v) for v in values)
        if op == "In":
            out.append({"action": "keep", "source_labels": [value_label, present], "regex": f"({alternatives});true"})
        elif op == "NotIn":
            out.append({"action": "drop", "source_labels": [value_label, present], "regex": f"({alternatives});true"})
        elif op == "Exists":
            out.append({"action": "keep", "source_labels": [present], "regex": "true"})
        elif op == "DoesNotExist":
            out.append({"action": "drop", "source_labels": [present], "regex": "true"})
        else:
            raise ValueError(f"spec.selector.matchExpressions: operator {op!r} is not supported")
    return out


def scrape_configs(monitor: dict[str, Any], sd_config: dict[str, Any], namespace: str = "default") -> list[dict[str, Any]]:
    """One Prometheus scrape config per ``podMetricsEndpoints`` entry of ``monitor``.

    ``sd_config`` is merged into each ``kubernetes_sd_configs`` entry (how Prometheus reaches
    the API server: ``kubeconfig_file`` or ``api_server``); ``namespace`` is the monitor's
    when its metadata has none (``helm template`` leaves it to the release namespace)."""
    if monitor.get("kind") != "PodMonitor":
        raise ValueError(f"kind: expected PodMonitor, got {monitor.get('kind')!r}")
    meta, spec = monitor["metadata"], monitor["spec"]
    namespace = meta.get("namespace") or namespace
    unsupported = set(spec) - {"selector", "namespaceSelector", "podTargetLabels", "podMetricsEndpoints", "jobLabel"}
    if unsupported:
        raise ValueError(f"spec: {sorted(unsupported)} not supported by this translation")
    ns_selector = spec.get("namespaceSelector") or {}
    sd: dict[str, Any] = {"role": "pod", **sd_config}
    if not ns_selector.get("any"):
        sd["namespaces"] = {"names": list(ns_selector.get("matchNames") or [namespace])}
    configs = []
    for index, endpoint in enumerate(spec.get("podMetricsEndpoints") or []):
        extra = set(endpoint) - SUPPORTED_ENDPOINT_FIELDS
        if extra:
            raise ValueError(f"spec.podMetricsEndpoints[{index}]: {sorted(extra)} not supported by this translation")
        if "port" not in endpoint:
            raise ValueError(f"spec.podMetricsEndpoints[{index}].port is required here")
        relabel: list[dict[str, Any]] = [
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
            *_selector_relabelings(spec.get("selector") or {}),
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": re.escape(endpoint["port"])},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ]
        for label in spec.get("podTargetLabels") or []:
            relabel.append({"source_labels": [f"__meta_kubernetes_pod_label_{sanitize(label)}"], "target_label": sanitize(label), "regex": "(.+)", "replacement": "${1}"})
        if spec.get("jobLabel"):
            relabel.append({"source_labels": [f"__meta_kubernetes_pod_label_{sanitize(spec['jobLabel'])}"], "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
        else:
            relabel.append({"target_label": "job", "replacement": f"{namespace}/{meta['name']}"})
        relabel.append({"target_label": "endpoint", "replacement": endpoint["port"]})
        config: dict[str, Any] = {
            "job_name": f"podMonitor/{namespace}/{meta['name']}/{index}",
            "honor_labels": False,
            "kubernetes_sd_configs": [sd],
            "metrics_path": endpoint.get("path", "/metrics"),
            "scheme": endpoint.get("scheme", "http"),
            "relabel_configs": relabel,
        }
        if endpoint.get("interval"):
            config["scrape_interval"] = endpoint["interval"]
        if endpoint.get("scrapeTimeout"):
            config["scrape_timeout"] = endpoint["scrapeTimeout"]
        configs.append(config)
    return configs
