"""Canary rollouts on a real control plane, judged on live metrics: the operator (with the chart's
RBAC) trains versions in real training pods against a real MLflow server; the serving pods are
simulated by KWOK, so the test runs a real ``modelship serve`` per version, a real Prometheus
scraping them with the labels a PodMonitor gives (``namespace``; the server adds ``model``,
``version``, ``variant``) and evaluating the generated rules, and a small client that sends
requests to each version in the proportion the operator's HTTPRoute says.

Scenarios, one resource, in order: a healthy retrained version goes through its steps and is
promoted; a version whose predictions fail is rolled back with the condition naming the metric;
with manual approval the rollout waits and proceeds on ``modelship approve``; ``modelship
rollback`` restores the previous champion; an A/B test pins header-matched requests to their
variant, reports each variant's figures and ends on ``modelship promote --variant``. A second
test SIGKILLs the operator at ten points across a canary."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import faultymodels
import httpx
import pytest
from serving import servingkit
import yaml
from resources import model_deployment
from servers import OperatorProcess, PrometheusServer

from integration.test_operator import CRD, mlflow_server, service_account_kubeconfig  # noqa: F401  (mlflow_server is a fixture)
from modelship.api import names
from modelship.monitoring import dashboards, rules
from modelship.monitoring.metrics import LABEL_DEPLOYMENT
from modelship.operator.conditions import condition
from spec_cases import REPO
from testdata import CALIFORNIA_HOUSING

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "housing"
STEPS = [{"weight": 20, "pause": "6s"}, {"weight": 60, "pause": "6s"}, {"weight": 100, "pause": "6s"}]


def resource(namespace: str, alpha: float, approval: str = "auto") -> dict:
    return model_deployment(
        NAME, namespace, dataset={"uri": CALIFORNIA_HOUSING.as_uri(), "target": "median_house_value"},
        # A ridge regression trains in seconds; its served copy fails or slows on request.
        training={"framework": "sklearn", "estimator": faultymodels.ESTIMATOR, "hyperparameters": {"alpha": alpha}},
        serving={"replicas": 1},
        rollout={
            "strategy": "canary",
            "canary": {"steps": STEPS},
            "analysis": {"maxErrorRate": 0.05, "maxLatencyP95Ms": 1000, "minRequests": 5, "interval": "3s", "failureThreshold": 2, "inconclusiveTimeout": "300s"},
            "approval": approval,
            "rollbackWindow": "10m",
        },
    )


class Fleet:
    """The model servers of each version (what KWOK's pods would run), and Prometheus scraping them."""

    def __init__(self, workdir: Path, tracking_uri: str, model_name: str, namespace: str, prometheus: PrometheusServer, name: str = NAME) -> None:
        """``name``: the ModelDeployment's (its pods and route backends are ``<name>-v<version>``)."""
        self.name = name
        self.workdir = workdir
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.namespace = namespace
        self.prometheus = prometheus
        self.urls: dict[str, str] = {}
        self._stack: list = []
        self._by_version: dict[str, object] = {}

    def serve(self, version: str, variant: str, fault: dict[str, str] | None = None, spec: dict | None = None) -> servingkit.Server:
        """``spec``: the ModelDeployment's spec, for the server's drift monitoring."""
        context = servingkit.serve(
            self.workdir / f"v{version}", self.model_name, version, self.tracking_uri, self.workdir / "cache", variant=variant, spec=spec,
            extra_env=faultymodels.with_pythonpath({**os.environ, **(fault or {})}),
        )
        server = context.__enter__()
        self._stack.append(context)
        self._by_version[version] = context
        server.wait_ready()
        # The labels the chart's PodMonitor gives: the pod's namespace and its ModelDeployment.
        self.prometheus.add_group([f"127.0.0.1:{server.port}"], {"namespace": self.namespace, "pod": f"{self.name}-v{version}", LABEL_DEPLOYMENT: self.name})
        self.urls[f"{self.name}-v{version}"] = server.url
        return server

    def retire(self, version: str) -> None:
        """Stop a version's model server, as its pod stops when its Deployment is removed."""
        context = self._by_version.pop(version)
        self._stack.remove(context)
        self.urls.pop(f"{NAME}-v{version}", None)
        context.__exit__(None, None, None)

    def stop(self) -> None:
        for context in reversed(self._stack):
            context.__exit__(None, None, None)


class TrafficDriver:
    """A small bounded client: ``rate`` requests a second, each to a backend picked by the weights
    ``read_weights`` returns (backend name → weight), posted to the URL ``urls`` gives for it. It
    does not care how a request reaches a backend: with a gateway, ``urls`` maps every backend
    to the gateway and the split is the gateway's."""

    def __init__(
        self,
        read_weights: Callable[[], dict[str, int]],
        urls: dict[str, str],
        rate: float = 25,
        read_pins: Callable[[], dict[tuple[str, str], str]] | None = None,
        read_mirror: Callable[[], tuple[str, int] | None] | None = None,
        records: list[dict] | None = None,
    ) -> None:
        self.read_weights = read_weights
        self.urls = urls
        self.rate = rate
        self.seen: list[dict[str, int]] = []
        self.sent: dict[str, int] = {}
        #: (header name, value) → backend, from the route's header rules; every third request
        #: carries each header, and its answer's variant is recorded in ``pinned``.
        self.read_pins = read_pins
        self.pinned: dict[tuple[str, str], list[str]] = {}
        #: (backend, percent) of the route's RequestMirror filter: that share of the weighted
        #: requests is copied there too, its answer discarded, and its Host marked with
        #: ``-shadow`` as Envoy marks it (tests/e2e/test_shadow.py measures that).
        self.read_mirror = read_mirror
        self.mirrored: dict[str, int] = {}
        #: What each weighted request posts: one of these, at random.
        self.records = records or [servingkit.HOUSING_RECORD]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TrafficDriver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        weights: dict[str, int] = {}
        pins: dict[tuple[str, str], str] = {}
        mirror: tuple[str, int] | None = None
        refreshed = 0.0
        count = 0
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                count += 1
                if time.monotonic() - refreshed > 0.5:
                    try:
                        weights = self.read_weights()
                        pins = self.read_pins() if self.read_pins else {}
                        mirror = self.read_mirror() if self.read_mirror else None
                    except Exception:  # noqa: BLE001 - the route may not exist yet
                        weights, pins, mirror = {}, {}, None
                    refreshed = time.monotonic()
                    if weights and (not self.seen or self.seen[-1] != weights):
                        self.seen.append(dict(weights))
                live = {b: w for b, w in weights.items() if w > 0 and b in self.urls}
                pinned = [(header, backend) for header, backend in pins.items() if backend in self.urls]
                if pinned and count % 3 == 0:
                    header, backend = pinned[count // 3 % len(pinned)]
                    try:
                        answer = client.post(f"{self.urls[backend]}/predict", json=servingkit.HOUSING_RECORD, headers=dict([header]))
                        self.pinned.setdefault(header, []).append(answer.headers.get("x-model-variant", "?"))
                    except httpx.HTTPError:
                        pass
                elif live:
                    backend = random.choices(list(live), weights=list(live.values()))[0]
                    try:
                        client.post(f"{self.urls[backend]}/predict", json=random.choice(self.records))
                        self.sent[backend] = self.sent.get(backend, 0) + 1
                        if mirror and mirror[0] in self.urls and random.random() * 100 < mirror[1]:
                            client.post(f"{self.urls[mirror[0]]}/predict", json=servingkit.HOUSING_RECORD, headers={"host": mirror[0] + names.SHADOW_HOST_SUFFIX})
                            self.mirrored[mirror[0]] = self.mirrored.get(mirror[0], 0) + 1
                    except httpx.HTTPError:
                        pass
                self._stop.wait(1 / self.rate)


@pytest.fixture
def rollout_env(cluster, namespace, mlflow_server, pod_runner, tmp_path) -> Iterator[dict]:  # noqa: F811
    cluster.apply(CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelship.io", "--timeout=60s")
    prometheus = PrometheusServer(tmp_path / "prometheus", [], [REPO / rules.RULES_OUTPUTS[0]], {}).start()
    kubeconfig = service_account_kubeconfig(cluster, namespace, tmp_path)
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MODELSHIP_TRAINING_POD_LABELS": json.dumps({"modelship.io/test-pod-runner": "local"}),
        "MODELSHIP_RESYNC_INTERVAL": "15",
        names.ENV_PROMETHEUS_URL: prometheus.url,
        "MODELSHIP_RETAIN_ROLLED_BACK_SECONDS": "20",
    }
    fleet = Fleet(tmp_path / "fleet", mlflow_server.url, f"{namespace}-{NAME}", namespace, prometheus)
    with pytest.MonkeyPatch.context() as patch:
        # The training pods (local processes of the pod runner) import the fault-injecting estimator.
        patch.setenv("PYTHONPATH", faultymodels.with_pythonpath(dict(os.environ))["PYTHONPATH"])
        operator = OperatorProcess(kubeconfig, namespace, env, tmp_path / "operator.log").start()
        # The operator's rollout gauges, for the dashboard's rollout row.
        prometheus.add_group([f"127.0.0.1:{operator.port}"], {"namespace": "modelship-system", "pod": "modelship-operator"})
        try:
            yield {"operator": operator, "prometheus": prometheus, "fleet": fleet, "mlflow": mlflow_server}
        finally:
            operator.stop()
            fleet.stop()
            prometheus.stop()
            print(f"operator log: {operator.log_path}")


def status_of(cluster, namespace) -> dict:
    return cluster.kubectl_json("get", "mdep", NAME, "-n", namespace).get("status", {})


def route_weights(cluster, namespace, name: str = NAME) -> dict[str, int]:
    route = cluster.kubectl_json("get", "httproute", name, "-n", namespace)
    # The backends taking traffic; versions still served are named at weight 0 (traffic.with_standbys).
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"] if b["weight"]}


def route_pins(cluster, namespace) -> dict[tuple[str, str], str]:
    """(header, value) → backend of the route's header rules."""
    route = cluster.kubectl_json("get", "httproute", NAME, "-n", namespace)
    return {
        (header["name"], header["value"]): rule["backendRefs"][0]["name"]
        for rule in route["spec"]["rules"][:-1]
        for match in rule["matches"]
        for header in match.get("headers") or []
    }


def route_mirror(cluster, namespace) -> tuple[str, int] | None:
    route = cluster.kubectl_json("get", "httproute", NAME, "-n", namespace)
    for route_filter in route["spec"]["rules"][-1].get("filters") or []:
        if route_filter["type"] == "RequestMirror":
            return route_filter["requestMirror"]["backendRef"]["name"], route_filter["requestMirror"].get("percent", 100)
    return None


def pod_variant(cluster, namespace, version: str) -> str:
    """The variant the operator gave a version's pods (what its model server reports)."""
    deployment = cluster.kubectl_json("get", "deployment", f"{NAME}-v{version}", "-n", namespace)
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return next(e["value"] for e in env if e["name"] == names.ENV_VARIANT)


def deployments(cluster, namespace) -> dict[str, int | None]:
    items = cluster.kubectl_json("get", "deployments", "-n", namespace, "-l", f"{names.DEPLOYMENT_LABEL}={NAME}")["items"]
    return {d["metadata"]["name"]: d["spec"].get("replicas") for d in items}


def events(cluster, namespace) -> list[dict]:
    return cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={NAME}")["items"]


def modelship(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelship.cli_main", *args], capture_output=True, text=True, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}, timeout=60
    )


def wait_status(cluster, namespace, what: str, predicate, timeout: float = 300) -> dict:
    return cluster.wait_until(what, lambda: (s := status_of(cluster, namespace)) and predicate(s) and s, timeout=timeout, interval=0.5)


def patch_spec(cluster, namespace, patch: dict) -> None:
    cluster.kubectl("patch", "mdep", NAME, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": patch}))


def new_version(cluster, namespace, version: str) -> None:
    wait_status(cluster, namespace, f"version {version} to be trained", lambda s: (s.get("lastTraining") or {}).get("modelVersion") == version, timeout=300)


def test_canary_rollouts_on_live_metrics(cluster, namespace, rollout_env):
    from mlflow import MlflowClient

    fleet: Fleet = rollout_env["fleet"]
    registry = MlflowClient(tracking_uri=rollout_env["mlflow"].url)
    model_name = f"{namespace}-{NAME}"

    # The first version has no champion to compare with: it serves once ready.
    cluster.apply(yaml.safe_dump(resource(namespace, alpha=1.0)))
    wait_status(cluster, namespace, "version 1 to be champion", lambda s: s.get("championVersion") == "1" and s.get("phase") == "Serving")
    fleet.serve("1", "champion")

    with TrafficDriver(lambda: route_weights(cluster, namespace), fleet.urls, read_pins=lambda: route_pins(cluster, namespace)) as traffic:
        # 1. A healthy retrained version walks 20 → 60 → 100 and is promoted, alias first.
        patch_spec(cluster, namespace, {"training": {"hyperparameters": {"alpha": 2.0}}})
        new_version(cluster, namespace, "2")
        fleet.serve("2", "canary")
        promoted = wait_status(cluster, namespace, "version 2 to be promoted", lambda s: s.get("championVersion") == "2" and s.get("phase") == "Serving", timeout=240)
        assert registry.get_model_version_by_alias(model_name, "champion").version == "2"
        rollout = promoted["rollout"]
        assert rollout["phase"] == "Promoted" and rollout["previousChampion"] == "1" and rollout["failedChecks"] == 0
        assert {c["name"]: c["verdict"] for c in rollout["checks"]} == {"requests": "Successful", "errorRate": "Successful", "latencyP95": "Successful"}
        assert condition(promoted["conditions"], "Promoted")["status"] == "True"
        candidate_shares = [w.get(f"{NAME}-v2", 0) for w in traffic.seen]
        assert [s for s in (20, 60, 100) if s in candidate_shares] == [20, 60, 100], traffic.seen
        assert set(candidate_shares) <= {0, 20, 60, 100}, traffic.seen
        steps = [e["message"] for e in events(cluster, namespace) if e["reason"] == "CanaryStep"]
        assert any("step 3/3: version 2 takes 100%" in m for m in steps), steps
        # The previous champion stays warm for an instant rollback: one replica, no traffic.
        assert deployments(cluster, namespace) == {f"{NAME}-v1": 1, f"{NAME}-v2": 1}
        assert route_weights(cluster, namespace) == {f"{NAME}-v2": 100}

        # 2. A version whose predictions fail is rolled back on its error rate; the alias stays.
        patch_spec(cluster, namespace, {"training": {"hyperparameters": {"alpha": 3.0}}})
        new_version(cluster, namespace, "3")
        fleet.serve("3", "canary", fault={faultymodels.FAULT_ENV: "error"})
        failed = wait_status(cluster, namespace, "version 3 to be rolled back", lambda s: (s.get("rollout") or {}).get("phase") == "RolledBack", timeout=180)
        promoted_condition = condition(failed["conditions"], "Promoted")
        assert promoted_condition["status"] == "False" and promoted_condition["reason"] == "AnalysisFailed"
        assert "errorRate 1 is outside <= 0.05" in promoted_condition["message"], promoted_condition
        assert failed["championVersion"] == "2" and failed["phase"] == "Degraded" and failed["rollout"]["candidate"] == "3"
        assert route_weights(cluster, namespace) == {f"{NAME}-v2": 100}
        assert registry.get_model_version_by_alias(model_name, "champion").version == "2"
        warnings = [e for e in events(cluster, namespace) if e["reason"] == "AnalysisFailed" and e["type"] == "Warning"]
        assert warnings and any("errorRate" in e["message"] for e in warnings)
        assert max(w.get(f"{NAME}-v3", 0) for w in traffic.seen) <= 20, traffic.seen  # it never left step 1
        # Kept for inspection at no traffic, then removed (MODELSHIP_RETAIN_ROLLED_BACK_SECONDS=20).
        assert f"{NAME}-v3" in deployments(cluster, namespace)
        cluster.wait_until("version 3's pods to be removed", lambda: f"{NAME}-v3" not in deployments(cluster, namespace), timeout=60)
        assert status_of(cluster, namespace)["rollout"]["phase"] == "RolledBack"  # and not rolled out again

        # 3. Manual approval: every step passes, then it waits; approve promotes.
        refused = modelship(cluster, "approve", NAME, "-n", namespace)
        assert refused.returncode == 1 and "is not waiting for an approval" in refused.stderr and "nothing changed" in refused.stderr
        patch_spec(cluster, namespace, {"rollout": {"approval": "manual"}, "training": {"hyperparameters": {"alpha": 4.0}}})
        new_version(cluster, namespace, "4")
        fleet.serve("4", "canary")
        waiting = wait_status(cluster, namespace, "version 4 to await approval", lambda s: s.get("phase") == "AwaitingApproval", timeout=240)
        assert waiting["rollout"]["awaitingApproval"] and waiting["championVersion"] == "2"
        printed = modelship(cluster, "status", NAME, "-n", namespace)
        assert printed.returncode == 0 and "AwaitingApproval" in printed.stdout and "requests" in printed.stdout, printed.stdout
        # Every query of the dashboard's rollout row answers from the real operator and servers.
        variables = {"$model": model_name, "$namespace": namespace, "$__rate_interval": "1m"}
        for title, _, expr, _ in dashboards.rollout_queries():
            for variable, value in variables.items():
                expr = expr.replace(variable, value)
            answer = cluster.wait_until(f"data for {title!r}", lambda expr=expr: rollout_env["prometheus"].query(expr), timeout=30)
            if "weight" in title:
                assert {s["metric"]["version"]: float(s["value"][1]) for s in answer} == {"2": 0.0, "4": 100.0}
            if "step" in title:
                assert float(answer[0]["value"][1]) == 3
        time.sleep(6)  # it keeps waiting
        assert status_of(cluster, namespace)["championVersion"] == "2"
        assert registry.get_model_version_by_alias(model_name, "champion").version == "2"
        approved = modelship(cluster, "approve", NAME, "-n", namespace)
        assert approved.returncode == 0, approved.stderr
        wait_status(cluster, namespace, "version 4 to be promoted", lambda s: s.get("championVersion") == "4" and s.get("phase") == "Serving", timeout=60)
        assert registry.get_model_version_by_alias(model_name, "champion").version == "4"

        # 4. Rollback after promotion: version 2 is still warm, so traffic goes back at once.
        started = time.monotonic()
        rolled = modelship(cluster, "rollback", NAME, "-n", namespace)
        assert rolled.returncode == 0, rolled.stderr
        cluster.wait_until("the route to send everything to version 2", lambda: route_weights(cluster, namespace) == {f"{NAME}-v2": 100}, timeout=30, interval=0.2)
        seconds = time.monotonic() - started
        back = wait_status(cluster, namespace, "version 2 to be champion again", lambda s: s.get("championVersion") == "2", timeout=30)
        assert back["rollout"]["phase"] == "RolledBack" and condition(back["conditions"], "Promoted")["reason"] == "RolledBack"
        assert back["phase"] == "Serving"
        assert registry.get_model_version_by_alias(model_name, "champion").version == "2"
        print(f"rollback: route back on version 2 {seconds:.1f}s after `modelship rollback`")
        again = modelship(cluster, "rollback", NAME, "-n", namespace)
        assert again.returncode == 1 and "no previous version" in again.stderr

        # 5. An A/B test: the header pins requests to the challenger, the rest split 70/30; the
        #    status carries each variant's live figures; it runs until a person promotes one.
        variants = [
            {"name": "champion", "modelVersion": "champion", "weight": 70},
            {"name": "challenger", "modelVersion": "challenger", "weight": 30, "headerMatch": {"name": "x-variant", "value": "challenger"}},
        ]
        patch_spec(cluster, namespace, {"rollout": {"strategy": "abTest", "abTest": {"variants": variants}}, "training": {"hyperparameters": {"alpha": 5.0}}})
        new_version(cluster, namespace, "5")
        cluster.wait_until("the challenger's Deployment", lambda: f"{NAME}-v5" in deployments(cluster, namespace), timeout=60)
        assert pod_variant(cluster, namespace, "5") == "challenger" and pod_variant(cluster, namespace, "2") == "champion"
        fleet.serve("5", pod_variant(cluster, namespace, "5"))
        testing = wait_status(
            cluster, namespace, "per-variant figures from Prometheus",
            lambda s: (s.get("rollout") or {}).get("phase") == "ABTesting" and all((v.get("requests") or 0) > 0 for v in s["rollout"].get("variants") or [{}]),
            timeout=120,
        )
        assert testing["phase"] == "Progressing" and testing["championVersion"] == "2"
        assert {v["name"]: (v["version"], v["weight"]) for v in testing["rollout"]["variants"]} == {"champion": ("2", 70), "challenger": ("5", 30)}
        assert route_weights(cluster, namespace) == {f"{NAME}-v2": 70, f"{NAME}-v5": 30}
        assert route_pins(cluster, namespace) == {("x-variant", "challenger"): f"{NAME}-v5"}
        cluster.wait_until("header-pinned requests", lambda: len(traffic.pinned.get(("x-variant", "challenger"), [])) >= 10, timeout=60)
        assert set(traffic.pinned[("x-variant", "challenger")]) == {"challenger"}, traffic.pinned
        time.sleep(5)  # it runs until promoted
        assert status_of(cluster, namespace)["championVersion"] == "2"
        refused = modelship(cluster, "promote", NAME, "-n", namespace, "--variant", "blue")
        assert refused.returncode == 1 and "no variant 'blue'" in refused.stderr
        assert modelship(cluster, "promote", NAME, "-n", namespace, "--variant", "challenger").returncode == 0
        wait_status(cluster, namespace, "the challenger to be champion", lambda s: s.get("championVersion") == "5" and s.get("phase") == "Serving", timeout=60)
        assert registry.get_model_version_by_alias(model_name, "champion").version == "5"
        assert route_weights(cluster, namespace) == {f"{NAME}-v5": 100}

    reasons = {e["reason"] for e in events(cluster, namespace)}
    assert {"RolloutStarted", "CanaryStep", "Promoted", "AnalysisFailed", "AwaitingApproval", "RolledBack", "ABTestStarted"} <= reasons

    # A custom metric whose template cannot be PromQL: the API server takes it (no CEL twin), the
    # operator reports it on the resource naming the metric, once, and does not retry.
    broken = resource(namespace, alpha=1.0)
    broken["metadata"]["name"] = "badquery"
    broken["spec"]["rollout"]["analysis"]["metrics"] = [{"name": "accuracy", "query": "sum(rate(x[{{window}}])", "min": 0.8}]
    cluster.apply(yaml.safe_dump(broken))
    invalid = cluster.wait_until(
        "the bad template to be reported",
        lambda: (s := cluster.kubectl_json("get", "mdep", "badquery", "-n", namespace).get("status", {})).get("phase") == "Failed" and s,
        timeout=60,
    )
    ready = condition(invalid["conditions"], "Ready")
    assert ready["reason"] == "InvalidSpec" and "metric accuracy" in ready["message"] and "unclosed '('" in ready["message"], ready
    time.sleep(5)
    log = rollout_env["operator"].log_path.read_text().splitlines()
    assert any("badquery: invalid spec" in line for line in log)
    assert not [line for line in log if "badquery" in line and "retrying" in line]  # not a crash loop
    assert "Forbidden" not in rollout_env["operator"].log_path.read_text()


def restart(operator: OperatorProcess, failpoints: str = "") -> None:
    """Start the operator again (after a SIGKILL), with these crash points armed."""
    operator.env = {**operator.env, names.ENV_FAILPOINTS: failpoints}
    operator.start()


def kill_and_restart(operator: OperatorProcess, kills: list[str], point: str, failpoints: str = "") -> None:
    operator.kill()
    kills.append(point)
    restart(operator, failpoints)


def test_operator_killed_across_a_canary_reaches_the_same_end(cluster, namespace, rollout_env):
    from mlflow import MlflowClient

    fleet: Fleet = rollout_env["fleet"]
    operator: OperatorProcess = rollout_env["operator"]
    registry = MlflowClient(tracking_uri=rollout_env["mlflow"].url)
    model_name = f"{namespace}-{NAME}"
    kills: list[str] = []

    def rollout_phase() -> str | None:
        return (status_of(cluster, namespace).get("rollout") or {}).get("phase")

    def at_step(step: str) -> bool:
        rollout = status_of(cluster, namespace).get("rollout") or {}
        return rollout.get("phase") == "Progressing" and rollout.get("step") == step

    def died() -> bool:
        return operator.process is not None and operator.process.poll() is not None

    shadowed = resource(namespace, alpha=1.0, approval="manual")
    shadowed["spec"]["rollout"]["mirror"] = {"percent": 50}  # a shadow phase before the first step
    cluster.apply(yaml.safe_dump(shadowed))
    wait_status(cluster, namespace, "version 1 to be champion", lambda s: s.get("championVersion") == "1" and s.get("phase") == "Serving")
    fleet.serve("1", "champion")
    with TrafficDriver(lambda: route_weights(cluster, namespace), fleet.urls, read_mirror=lambda: route_mirror(cluster, namespace)) as traffic:
        patch_spec(cluster, namespace, {"training": {"hyperparameters": {"alpha": 2.0}}})
        new_version(cluster, namespace, "2")
        kill_and_restart(operator, kills, "candidate trained, before its rollout started")
        fleet.serve("2", "canary")
        for step in ("shadow", "1/3", "2/3", "3/3"):
            cluster.wait_until(f"step {step}", lambda step=step: at_step(step), timeout=180, interval=0.3)
            kill_and_restart(operator, kills, f"step {step} just entered")
            time.sleep(3)
            if at_step(step):
                kill_and_restart(operator, kills, f"mid step {step}")
        cluster.wait_until("the approval wait", lambda: rollout_phase() == "AwaitingApproval", timeout=180, interval=0.3)
        for _ in range(2):
            kill_and_restart(operator, kills, "awaiting approval")
            time.sleep(2)
            assert rollout_phase() == "AwaitingApproval" and status_of(cluster, namespace)["championVersion"] == "1"
        # The approval is acted on by an operator that dies right after moving the alias.
        kill_and_restart(operator, kills, "awaiting approval (crash point armed)", failpoints="after-alias-move")
        assert modelship(cluster, "approve", NAME, "-n", namespace).returncode == 0
        cluster.wait_until("the operator to die after moving the alias", died, timeout=60)
        kills.append("between the alias move and the status write (promotion)")
        assert registry.get_model_version_by_alias(model_name, "champion").version == "2"
        assert status_of(cluster, namespace)["championVersion"] == "1"  # the status did not say so yet
        restart(operator)
        wait_status(cluster, namespace, "version 2 to be champion", lambda s: s.get("championVersion") == "2" and s.get("phase") == "Serving", timeout=60)

        # Rollback, with a crash between the alias move and the status write, and one right after.
        kill_and_restart(operator, kills, "serving version 2 (crash point armed)", failpoints="after-alias-move")
        assert modelship(cluster, "rollback", NAME, "-n", namespace).returncode == 0
        cluster.wait_until("the operator to die after moving the alias back", died, timeout=60)
        kills.append("between the alias move and the status write (rollback)")
        assert registry.get_model_version_by_alias(model_name, "champion").version == "1"
        restart(operator)
        wait_status(cluster, namespace, "version 1 to be champion again", lambda s: s.get("championVersion") == "1", timeout=60)
        kill_and_restart(operator, kills, "rolled back")
        time.sleep(3)

    assert len(kills) >= 10, kills
    final = status_of(cluster, namespace)
    assert final["championVersion"] == "1" and final["phase"] == "Serving" and final["rollout"]["phase"] == "RolledBack"
    assert route_weights(cluster, namespace) == {f"{NAME}-v1": 100}
    assert registry.get_model_version_by_alias(model_name, "champion").version == "1"
    promotions = [e for e in events(cluster, namespace) if e["reason"] == "Promoted" and "version 2" in e["message"]]
    assert sum(e.get("count", 1) for e in promotions) == 1, promotions  # no second promotion
    # The candidate never got more than its step's weight, and never went back and forth.
    shares = [w.get(f"{NAME}-v2", 0) for w in traffic.seen]
    ordered = [s for i, s in enumerate(shares) if i == 0 or s != shares[i - 1]]
    assert ordered == [0, 20, 60, 100, 0], (ordered, traffic.seen)
    # The shadow phase copied requests to version 2 before it took any real traffic.
    assert traffic.mirrored.get(f"{NAME}-v2", 0) >= 5, traffic.mirrored
    assert any(e["reason"] == "Mirroring" for e in events(cluster, namespace))
    print(f"SIGKILLed at {len(kills)} points: {kills}")
