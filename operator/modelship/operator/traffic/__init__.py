"""Traffic providers: how a desired split between model versions becomes routing objects.

Flagger's router shape, made level-triggered: :meth:`TrafficProvider.routes` turns a split
(weights, header routes, a mirror) into the objects to apply, and :meth:`TrafficProvider.applied`
reads a split back from what is applied. The step arithmetic never sees a route; a provider
never decides a weight. One module per provider; :func:`provider_for` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any, Protocol

from modelship.api.v1alpha1 import ModelDeployment
from modelship.operator.config import OperatorConfig


@dataclass(frozen=True)
class HeaderRoute:
    """Requests carrying ``name: value`` go to ``version`` only."""

    name: str
    value: str
    version: str


@dataclass(frozen=True)
class Mirror:
    """A copy of ``percent`` of the requests goes to ``version``; its answers are discarded."""

    version: str
    percent: int


@dataclass(frozen=True)
class TrafficSplit:
    #: Model version → percent of the requests no header route takes.
    weights: dict[str, int] = field(default_factory=dict)
    header_routes: tuple[HeaderRoute, ...] = ()
    mirror: Mirror | None = None


def with_standbys(weights: dict[str, int], serving: Iterable[str]) -> dict[str, int]:
    """The route's split: ``weights``, and every other version still served at weight 0.

    A gateway learns a backend from the routes that name it: Contour gives Envoy a cluster only
    for a Service some route refers to, and Envoy answers 503 for a route whose cluster has not
    arrived yet. A version that first appears in the route together with its share (a canary's
    first step, an A/B arm, a rollback to the warm previous champion) loses its first requests
    to that race; named at weight 0 from the moment its pods are kept, its backend is known
    before it takes any traffic. Weight 0 sends nothing there."""
    return {**{version: 0 for version in serving if version not in weights}, **weights}


class TrafficProvider(Protocol):
    name: str

    def routes(self, resource: ModelDeployment, config: OperatorConfig, split: TrafficSplit) -> list[dict[str, Any]]:
        """The objects that route the resource's endpoint as ``split`` says."""
        ...

    def applied(self, resource: ModelDeployment, objects: list[dict[str, Any]]) -> TrafficSplit | None:
        """The split the given (observed) objects apply, or None when they route nothing of ours."""
        ...


def provider_for(config: OperatorConfig) -> TrafficProvider:
    if config.traffic_provider == "gatewayapi":
        from modelship.operator.traffic.gatewayapi import GatewayApiProvider

        return GatewayApiProvider()
    raise ValueError(f"unknown traffic provider {config.traffic_provider!r}; one of: gatewayapi")
