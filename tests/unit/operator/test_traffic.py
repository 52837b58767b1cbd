"""The Gateway API traffic provider: a split becomes one HTTPRoute (built by builders.http_route)
and reads back as the same split."""

from __future__ import annotations

import pytest

from modelship.api import ModelDeployment
from modelship.operator.config import OperatorConfig
from modelship.operator.traffic import HeaderRoute, Mirror, TrafficSplit, provider_for, with_standbys
from spec_cases import base_resource

RESOURCE = ModelDeployment.model_validate(base_resource())
CONFIG = OperatorConfig()


@pytest.mark.parametrize(
    "split",
    [
        TrafficSplit(weights={"1": 100}),
        TrafficSplit(weights={"1": 90, "2": 10}),
        TrafficSplit(weights={"1": 0, "2": 100}),
        TrafficSplit(weights={"3": 50, "4": 50}, header_routes=(HeaderRoute("x-variant", "a", "3"), HeaderRoute("x-variant", "b", "4"))),
        TrafficSplit(weights={"1": 100}, mirror=Mirror("2", 25)),
    ],
)
def test_split_round_trips_through_the_route(split):
    provider = provider_for(CONFIG)
    objects = provider.routes(RESOURCE, CONFIG, split)
    assert [o["kind"] for o in objects] == ["HTTPRoute"]
    assert provider.applied(RESOURCE, objects) == split


def test_header_rules_come_before_the_weighted_default():
    split = TrafficSplit(weights={"3": 70, "4": 30}, header_routes=(HeaderRoute("x-variant", "b", "4"),), mirror=Mirror("4", 10))
    route = provider_for(CONFIG).routes(RESOURCE, CONFIG, split)[0]
    first, default = route["spec"]["rules"]
    assert first["matches"] == [{"path": {"type": "PathPrefix", "value": "/default/california-housing"}, "headers": [{"type": "Exact", "name": "x-variant", "value": "b"}]}]
    assert [b["name"] for b in first["backendRefs"]] == ["california-housing-v4"]
    assert [(b["name"], b["weight"]) for b in default["backendRefs"]] == [("california-housing-v3", 70), ("california-housing-v4", 30)]
    assert default["filters"][1] == {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "california-housing-v4", "port": 80}, "percent": 10}}


def test_unknown_provider_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown traffic provider 'istio'"):
        provider_for(OperatorConfig(traffic_provider="istio"))


@pytest.mark.parametrize(
    ("weights", "serving", "route"),
    [
        # A canary's candidate, kept before its first step: in the route at 0 while the champion takes all.
        ({"1": 100}, ["1", "2"], {"2": 0, "1": 100}),
        # The warm previous champion after a promotion: named, so a rollback finds its backend known.
        ({"2": 100}, ["2", "1"], {"1": 0, "2": 100}),
        # Every served version already has a share: nothing added, nothing changed.
        ({"1": 80, "2": 20}, ["1", "2"], {"1": 80, "2": 20}),
        # A version no longer kept (its pods are going away) is not named.
        ({"1": 100}, ["1"], {"1": 100}),
        # The first version, before its pods: the route has only it.
        ({"1": 100}, [], {"1": 100}),
    ],
)
def test_every_served_version_is_in_the_route_before_it_takes_traffic(weights, serving, route):
    assert with_standbys(weights, serving) == route
    assert {v: w for v, w in with_standbys(weights, serving).items() if w} == weights  # the split itself is untouched
