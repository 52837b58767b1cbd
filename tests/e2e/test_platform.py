"""The platform end to end: a ModelDeployment applied to the real control plane is trained and
served by pods that run as processes in their own network namespaces, reached through Contour +
Envoy, and scraped by Prometheus through Kubernetes service discovery."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from modelship.api.v1alpha1 import ModelDeployment
from modelship.monitoring import metrics as names
from modelship.operator import builders
from modelship.operator.config import OperatorConfig

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "diabetes-builtin.yaml"
RECORD = {"age": 0.04, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04, "s2": -0.03, "s3": -0.04, "s4": -0.003, "s5": 0.02, "s6": -0.02}
VARIANT_HEADER = "x-modelship-variant"


def sample(namespace: str, name: str = "diabetes") -> dict:
    resource = yaml.safe_load(SAMPLE.read_text())
    resource["metadata"].update(namespace=namespace, name=name)
    return resource


def predict(url: str, headers: dict[str, str] | None = None, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(f"{url}/predict", json=RECORD, headers=headers or {}, timeout=10)


def pods(platform, namespace: str, selector: str) -> list[dict]:
    return platform.cluster.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def endpoint_addresses(platform, namespace: str, service: str) -> dict[str, bool]:
    """address → ready, over the EndpointSlices the real controller keeps for ``service``."""
    slices = platform.cluster.kubectl_json("get", "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}")["items"]
    return {address: endpoint.get("conditions", {}).get("ready", False) for s in slices for endpoint in s.get("endpoints") or [] for address in endpoint["addresses"]}


@pytest.fixture(scope="module")
def served(platform):
    """The sample applied in its own namespace and answering through the gateway."""
    namespace = "e2e-happy"
    platform.cluster.create_namespace(namespace)
    applied = time.monotonic()
    platform.cluster.apply(json.dumps(sample(namespace)))

    def status() -> dict | None:
        found = platform.cluster.kubectl_json("get", "modeldeployment", "diabetes", "-n", namespace).get("status") or {}
        return found if found.get("championVersion") and found.get("endpoint") else None

    found = platform.cluster.wait_until("a champion version with an endpoint", status, timeout=300, interval=1)
    answer = platform.cluster.wait_until("a prediction through the gateway",
                                         lambda: (r := predict(found["endpoint"])).status_code == 200 and r, timeout=120, interval=0.5)
    yield {"namespace": namespace, "status": found, "first_answer": answer.json(), "seconds": time.monotonic() - applied}
    platform.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_sample_is_trained_and_served_by_pods_in_their_own_network(platform, served) -> None:
    namespace, status = served["namespace"], served["status"]
    [training] = pods(platform, namespace, "app.kubernetes.io/component=training")
    assert training["status"]["phase"] == "Succeeded"
    terminated = training["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["containerID"].startswith("process://") and json.loads(terminated["message"])["version"] == status["championVersion"]

    [serving] = pods(platform, namespace, "app.kubernetes.io/component=serving")
    assert ready(serving)
    pod_ip = serving["status"]["podIP"]
    assert ipaddress.ip_address(pod_ip) in platform.network.pod_range  # a real address of the bridge's range
    running = platform.kubelet.pod(namespace, serving["metadata"]["name"])
    assert running.netns in platform.network.namespaces()
    identified = subprocess.run(["ip", "netns", "identify", str(running.process.pid)], capture_output=True, text=True).stdout.strip()
    assert identified == running.netns  # the model server runs inside the pod's namespace
    service = builders.serving_name("diabetes", status["championVersion"])
    assert endpoint_addresses(platform, namespace, service) == {pod_ip: True}  # published by the EndpointSlice controller

    assert status["endpoint"] == f"{platform.gateway_url}/{namespace}/diabetes"  # the URL that works
    answer = predict(status["endpoint"])
    assert answer.status_code == 200
    body = answer.json()
    assert body["version"] == status["championVersion"] and body["model"] == f"{namespace}-diabetes"
    assert isinstance(body["predictions"][0], float)
    print(f"\napply → first prediction through the gateway: {served['seconds']:.1f}s")


def test_prometheus_discovers_the_serving_pod_and_records_its_version(platform, served) -> None:
    namespace, version = served["namespace"], served["status"]["championVersion"]
    [serving] = pods(platform, namespace, "app.kubernetes.io/component=serving")

    def target() -> dict | None:
        return next((t for t in platform.prometheus.targets_active()
                     if t["labels"].get("pod") == serving["metadata"]["name"] and t["health"] == "up"), None)

    found = platform.cluster.wait_until("the serving pod as an up target", target, timeout=60, interval=1)
    assert found["labels"]["namespace"] == namespace
    assert found["labels"]["modelship_io_deployment"] == "diabetes"  # the chart PodMonitor's podTargetLabels
    assert found["scrapeUrl"] == f"http://{serving['status']['podIP']}:3000/metrics"

    with httpx.Client() as client:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # traffic for rate() to see
            assert predict(served["status"]["endpoint"], client=client).status_code == 200
            time.sleep(0.05)
    query = f'{names.RECORD_REQUEST_RATE}{{namespace="{namespace}", outcome="success"}} > 0'
    series = platform.cluster.wait_until("the recording rule for the served version", lambda: platform.prometheus.query(query), timeout=60, interval=1)
    assert [s["metric"]["version"] for s in series] == [version]


def test_prometheus_sends_alerts_to_the_alertmanager_beside_it(platform) -> None:
    def active() -> list[str]:
        answer = httpx.get(f"{platform.prometheus.url}/api/v1/alertmanagers", timeout=10).json()["data"]
        return [a["url"] for a in answer["activeAlertmanagers"]]

    urls = platform.cluster.wait_until("an active Alertmanager", active, timeout=30, interval=0.5)
    assert urls == [f"http://{platform.alertmanager.address}/api/v2/alerts"]
    assert httpx.get(f"{platform.alertmanager.url}/-/ready", timeout=10).status_code == 200


# --- two versions behind one route -------------------------------------------------------


def _owned_by_nobody(obj: dict) -> dict:
    """The builders' object without its owner reference: the ModelDeployment here is never
    applied, so the garbage collector must not take what it would own."""
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("ownerReferences", None)
    return obj


@pytest.fixture(scope="module")
def two_versions(platform):
    """Versions 1 and 2 of one model, trained by two Jobs and served by the operator's
    Deployments and Services (version 1 with two replicas), behind the operator's HTTPRoute
    at 90/10 plus a rule sending the ``x-modelship-variant: canary`` header to version 2 only."""
    namespace = "e2e-split"
    platform.cluster.create_namespace(namespace)
    raw = sample(namespace, "split")
    raw["metadata"].update(uid="00000000-0000-0000-0000-000000000000", generation=1)
    resource = ModelDeployment.model_validate(raw)
    config = OperatorConfig(mlflow_tracking_uri=platform.mlflow.url, gateway_name="modelship-gateway", gateway_namespace="modelship-system",
                            endpoint_base_url=platform.gateway_url)
    spec_hash = builders.training_hash(resource)
    jobs = [_owned_by_nobody(builders.training_job(resource, config, spec_hash, attempt=i)) for i in (0, 1)]
    for job in jobs:
        platform.cluster.apply(json.dumps(job))

    def results() -> list[str] | None:
        found = pods(platform, namespace, "app.kubernetes.io/component=training")
        if len(found) < 2 or not all(p["status"].get("phase") == "Succeeded" for p in found):
            assert not any(p["status"].get("phase") == "Failed" for p in found), [p["status"] for p in found]
            return None
        return sorted(json.loads(p["status"]["containerStatuses"][0]["state"]["terminated"]["message"])["version"] for p in found)

    versions = platform.cluster.wait_until("two trained versions", results, timeout=300, interval=1)
    assert versions == ["1", "2"]
    for version, variant, replicas in (("1", "champion", 2), ("2", "canary", 1)):
        deployment = _owned_by_nobody(builders.serving_deployment(resource, config, version, variant))
        deployment["spec"]["replicas"] = replicas
        platform.cluster.apply(json.dumps(deployment))
        platform.cluster.apply(json.dumps(_owned_by_nobody(builders.serving_service(resource, version, variant))))
    route = _owned_by_nobody(builders.http_route(resource, config, {"1": 90, "2": 10}))
    header_rule = copy.deepcopy(route["spec"]["rules"][0])
    header_rule["matches"][0]["headers"] = [{"type": "Exact", "name": VARIANT_HEADER, "value": "canary"}]
    header_rule["backendRefs"] = [b for b in header_rule["backendRefs"] if b["name"] == builders.serving_name("split", "2")]
    route["spec"]["rules"].insert(0, header_rule)
    platform.cluster.apply(json.dumps(route))
    url = builders.endpoint_url(resource, config)
    platform.cluster.wait_until("three ready serving pods", lambda: len([p for p in pods(platform, namespace, "app.kubernetes.io/component=serving") if ready(p)]) == 3,
                                timeout=180, interval=1)
    platform.cluster.wait_until("both versions answering through the gateway",
                                lambda: predict(url, {VARIANT_HEADER: "canary"}).status_code == 200 and predict(url).status_code == 200, timeout=60, interval=0.5)
    yield {"namespace": namespace, "url": url}
    platform.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_90_10_route_splits_1000_requests(two_versions) -> None:
    url = two_versions["url"]
    with httpx.Client(limits=httpx.Limits(max_connections=8)) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: predict(url, client=client), range(1000)))
    assert all(a.status_code == 200 for a in answers)
    first = sum(a.json()["version"] == "1" for a in answers)
    # Envoy picks each request's backend at random: 900 ± 3σ (σ = √(1000·0.9·0.1) ≈ 9.5), within 85–95 %.
    print(f"\n90/10 route: {first} of 1000 requests to version 1")
    assert 850 <= first <= 950


def test_header_matched_requests_reach_only_their_version(two_versions) -> None:
    with httpx.Client() as client:
        versions = {predict(two_versions["url"], {VARIANT_HEADER: "canary"}, client=client).json()["version"] for _ in range(100)}
    assert versions == {"2"}


def test_a_killed_serving_process_is_restarted_and_leaves_the_endpoints_meanwhile(platform, two_versions) -> None:
    namespace, url = two_versions["namespace"], two_versions["url"]
    service = builders.serving_name("split", "1")
    victim = pods(platform, namespace, "modelship.io/version=1")[0]
    name, pod_ip = victim["metadata"]["name"], victim["status"]["podIP"]
    running = platform.kubelet.pod(namespace, name)
    old_pid = running.process.pid
    outcomes: list[tuple[float, int]] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                try:
                    outcomes.append((time.monotonic(), predict(url, client=client).status_code))
                except httpx.HTTPError:
                    outcomes.append((time.monotonic(), 0))
                time.sleep(0.01)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        time.sleep(1)
        killed = time.monotonic()
        os.killpg(old_pid, signal.SIGKILL)
        platform.cluster.wait_until("the killed pod out of the ready endpoints",
                                    lambda: not endpoint_addresses(platform, namespace, service).get(pod_ip, False), timeout=30, interval=0.05)
        left = time.monotonic()
        platform.cluster.wait_until("the pod restarted and ready", lambda: (p := platform.cluster.kubectl_json("get", "pod", name, "-n", namespace))
                                    and p["status"]["containerStatuses"][0]["restartCount"] == 1 and ready(p), timeout=120, interval=0.5)
        platform.cluster.wait_until("the pod back in the endpoints", lambda: endpoint_addresses(platform, namespace, service).get(pod_ip), timeout=30, interval=0.2)
        time.sleep(1)
    finally:
        stop.set()
        sender.join(10)
    assert running.process.pid != old_pid  # a new process, same pod, same address
    after = [code for t, code in outcomes if t > left + 1.0]  # once Envoy heard of the removal
    print(f"\nkill → out of endpoints {left - killed:.2f}s; {len(outcomes)} requests, "
          f"{sum(c != 200 for _, c in outcomes)} failed")
    assert after and all(code == 200 for code in after)
