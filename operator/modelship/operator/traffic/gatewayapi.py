"""Gateway API ``HTTPRoute`` provider: weighted backendRefs, header-match rules before the
weighted default rule, and a ``RequestMirror`` filter. The route itself is built by
:func:`modelship.operator.builders.http_route`, the one builder of it."""

from __future__ import annotations

from typing import Any

from modelship.api.v1alpha1 import ModelDeployment
from modelship.operator import builders
from modelship.operator.config import OperatorConfig
from modelship.operator.traffic import HeaderRoute, Mirror, TrafficSplit


class GatewayApiProvider:
    name = "gatewayapi"

    def routes(self, resource: ModelDeployment, config: OperatorConfig, split: TrafficSplit) -> list[dict[str, Any]]:
        return [builders.http_route(resource, config, split.weights, split.header_routes, split.mirror)]

    def applied(self, resource: ModelDeployment, objects: list[dict[str, Any]]) -> TrafficSplit | None:
        route = next((o for o in objects if o.get("kind") == "HTTPRoute" and o["metadata"]["name"] == resource.metadata.name), None)
        if route is None:
            return None
        versions = {builders.serving_name(resource.metadata.name, v): v for v in _versions(route)}
        weights: dict[str, int] = {}
        headers: list[HeaderRoute] = []
        mirror = None
        for rule in route["spec"].get("rules") or []:
            header_matches = [h for match in rule.get("matches") or [] for h in match.get("headers") or []]
            backends = rule.get("backendRefs") or []
            if header_matches and backends:
                headers += [HeaderRoute(h["name"], h["value"], versions[backends[0]["name"]]) for h in header_matches]
                continue
            for backend in backends:
                weights[versions[backend["name"]]] = int(backend.get("weight", 1))
            for rule_filter in rule.get("filters") or []:
                if rule_filter.get("type") == "RequestMirror":
                    mirrored = rule_filter["requestMirror"]
                    mirror = Mirror(versions[mirrored["backendRef"]["name"]], int(mirrored.get("percent", 100)))
        return TrafficSplit(weights=weights, header_routes=tuple(headers), mirror=mirror)


def _versions(route: dict[str, Any]) -> set[str]:
    """Every version a route names (its backends are ``<name>-v<version>``)."""
    found = set()
    for rule in route["spec"].get("rules") or []:
        refs = list(rule.get("backendRefs") or [])
        refs += [f["requestMirror"]["backendRef"] for f in rule.get("filters") or [] if f.get("type") == "RequestMirror"]
        found |= {ref["name"].rsplit("-v", 1)[1] for ref in refs if "-v" in ref["name"]}
    return found
