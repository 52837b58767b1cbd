"""A canary's shadow phase on the whole platform: the operator puts a ``RequestMirror`` filter on
its HTTPRoute, the real Contour + Envoy copy every request to the candidate's pod and discard its
answers, and the candidate's model server counts those copies under ``traffic="shadow"`` while the
champion's counts its requests as ``live``; Prometheus, discovering both pods, evaluates the
chart's rules and counts only the live ones. The Host Envoy gives a mirrored copy is measured
from the candidate's log (the model server logs the first one it gets)."""

from __future__ import annotations

import json
import re
import threading

import httpx
import pytest

from e2e.test_platform import pods, predict, ready, sample
from modelship.monitoring import metrics as names
from modelship.operator import builders
from serving.servingkit import parse_metrics

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "shadowed"


def _status(platform, namespace: str) -> dict:
    return platform.cluster.kubectl_json("get", "modeldeployment", NAME, "-n", namespace).get("status") or {}


def _pod_metrics(pod: dict) -> dict:
    return parse_metrics(httpx.get(f"http://{pod['status']['podIP']}:3000/metrics", timeout=10).text)


def _requests(samples: dict, traffic: str) -> float:
    return sum(
        value for (name, labels), value in samples.items()
        if name == names.PREDICTIONS_TOTAL and dict(labels).get(names.LABEL_TRAFFIC) == traffic and dict(labels).get(names.LABEL_OUTCOME) == names.OUTCOME_SUCCESS
    )


def test_the_shadow_phase_mirrors_requests_through_envoy_and_they_count_apart(platform, e2e_namespace) -> None:
    namespace = e2e_namespace
    resource = sample(namespace, NAME)
    resource["spec"]["rollout"] = {
        "strategy": "canary",
        # A long first pause keeps the candidate in its shadow phase for the whole test.
        "canary": {"steps": [{"weight": 100, "pause": "10m"}]},
        "mirror": {"percent": 100},
        "analysis": {"interval": "5s", "minRequests": 5, "inconclusiveTimeout": "10m"},
    }
    platform.cluster.apply(json.dumps(resource))
    platform.cluster.wait_until("version 1 serving", lambda: (s := _status(platform, namespace)).get("championVersion") == "1" and s.get("endpoint") and s, timeout=300, interval=1)

    # A retraining gives version 2, which starts with the shadow phase.
    platform.kubectl("patch", "modeldeployment", NAME, "-n", namespace, "--type=merge", "-p", '{"spec": {"training": {"hyperparameters": {"n_estimators": 150}}}}')
    shadowing = platform.cluster.wait_until(
        "version 2 in its shadow phase", lambda: (s := _status(platform, namespace)).get("rollout", {}).get("step") == "shadow" and s, timeout=300, interval=1,
    )
    assert shadowing["rollout"]["candidate"] == "2" and shadowing["championVersion"] == "1"
    route = platform.cluster.kubectl_json("get", "httproute", NAME, "-n", namespace)
    [mirror] = [f["requestMirror"] for f in route["spec"]["rules"][-1]["filters"] if f["type"] == "RequestMirror"]
    assert mirror["backendRef"]["name"] == builders.serving_name(NAME, "2") and mirror.get("percent", 100) == 100
    assert {b["name"]: b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]} == {builders.serving_name(NAME, "1"): 100, builders.serving_name(NAME, "2"): 0}
    platform.cluster.wait_until("both serving pods ready", lambda: len([p for p in pods(platform, namespace, "app.kubernetes.io/component=serving") if ready(p)]) == 2, timeout=180, interval=1)
    [champion] = pods(platform, namespace, "modelship.io/version=1")
    [candidate] = pods(platform, namespace, "modelship.io/version=2")
    before = {"1": _pod_metrics(champion), "2": _pod_metrics(candidate)}

    endpoint = shadowing["endpoint"]
    with httpx.Client() as client:
        answers = [predict(endpoint, client=client) for _ in range(100)]
    assert all(a.status_code == 200 for a in answers)
    assert {a.json()["version"] for a in answers} == {"1"}  # every answer the callers see is the champion's

    def counted() -> tuple[float, float, float, float] | None:
        after = {"1": _pod_metrics(champion), "2": _pod_metrics(candidate)}
        delta = tuple(_requests(after[v], kind) - _requests(before[v], kind) for v in ("1", "2") for kind in (names.TRAFFIC_LIVE, names.TRAFFIC_SHADOW))
        return delta if delta[3] >= 100 else None

    # Envoy sends the copies without waiting: they may land a moment after the answers.
    champion_live, champion_shadow, candidate_live, candidate_shadow = platform.cluster.wait_until("the mirrored copies", counted, timeout=30, interval=0.5)
    assert (champion_live, champion_shadow) == (100, 0)
    assert (candidate_live, candidate_shadow) == (0, 100)
    log = platform.kubelet.output(candidate["metadata"]["uid"])
    host = re.search(r"first mirrored request \(Host '([^']*)'\)", log)
    assert host, log[-3000:]
    gateway_host = httpx.URL(platform.gateway_url).netloc.decode()
    print(f"\nHost of a mirrored copy on this Envoy: {host.group(1)!r} (the request's Host: {gateway_host!r})")
    assert host.group(1).split(":")[0].endswith("-shadow")

    # Prometheus (pods found through Kubernetes discovery, the chart's rules), with requests
    # flowing: once the user-traffic rule shows version 1's requests, it shows none for version 2,
    # whose mirrored copies the raw series hold over the same minute.
    stop = threading.Event()

    def send() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                predict(endpoint, client=client)
                stop.wait(0.1)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        def rate(version: str, traffic: str) -> float:
            found = platform.prometheus.query(f'sum(rate({names.PREDICTIONS_TOTAL}{{namespace="{namespace}", version="{version}", traffic="{traffic}"}}[1m]))')
            return float(found[0]["value"][1]) if found else 0.0

        def rule(version: str) -> float | None:
            found = platform.prometheus.query(f'{names.RECORD_REQUEST_RATE}{{namespace="{namespace}", version="{version}", outcome="success"}}')
            return float(found[0]["value"][1]) if found else None

        platform.cluster.wait_until("the copies in Prometheus", lambda: rate("2", names.TRAFFIC_SHADOW) > 0, timeout=90, interval=2)
        platform.cluster.wait_until("the user-traffic rule over the requests", lambda: (rule("1") or 0) > 0, timeout=120, interval=2)
        # The rule group runs on its own clock: the raw copies can be queryable before the rule has
        # been evaluated over two of version 2's scrapes, and until then it has no answer for it.
        [candidate_rule] = platform.cluster.wait_until("the user-traffic rule over version 2", lambda: (found,) if (found := rule("2")) is not None else None, timeout=90, interval=2)
        assert candidate_rule == 0.0 and rate("2", names.TRAFFIC_SHADOW) > 0
    finally:
        stop.set()
        sender.join(10)
