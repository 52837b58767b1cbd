"""Rollouts on the platform with the traffic really flowing through the gateway: the real
operator (the ``platform`` fixture's) walks a canary, rolls a faulty candidate back and runs an
A/B test; the versions are trained and served by pods of the process kubelet, the analysis
reads the platform's Prometheus (which found those pods through the chart's PodMonitor), and
every request of the test goes to ``status.endpoint`` — the Envoy listener Contour programs from
the operator's HTTPRoute. Each answer names the version and variant that made it.

What the traffic saw is judged against what Envoy was told, not against the HTTPRoute: a
watcher reads Envoy's applied route (its admin ``config_dump``) every 0.2 s, and a request
counts toward a weight only if it was sent after Envoy had that weight and answered before
Envoy was seen with the next one.

Sample sizes (the tolerance is a binomial one): a step's share is the mean of n independent
draws, σ = √(p(1-p)/n) ≤ 0.5/√n. Every measured share is from n ≥ ``MIN_SAMPLE`` = 900
requests, so σ ≤ 1.67 points, and ``TOLERANCE`` = 5 points is ≥ 3σ for every weight: a
correct split fails this test less than 3 times in 1000.

Scenarios, one resource (version numbers as when the file runs whole): version 1 serves;
a canary of version 2 walks 20 → 50 → 100 % and is promoted, then ``modelship rollback`` sends
everything back to the still-warm version 1; version 3, whose served copy fails every prediction
(the kubelet hook sets ``MODELSHIP_TEST_FAULT`` in its pod only), is rolled back on its error
rate; an A/B test of version 1 (70 %) against version 4 (30 %, and every request carrying
``x-variant: challenger``) ends with ``modelship promote --variant challenger``.

Figures of the last runs (2-core machine shared with other work, load average 10–27; printed by
each test with ``-s``), n = requests counted under that weight:

=================================  =================================================
canary step 20 %                   19.2 / 20.3 / 20.8 / 19.8 / 20.4 / 20.2 / 20.7 % (n 906–945)
canary step 50 %                   51.7 / 49.1 / 53.6 / 46.7 / 52.2 / 50.2 / 50.2 % (n 904–936)
promoted, version 2                100 % of 329–554 requests (trained → 100 % in Envoy 35–50 s)
``modelship rollback`` → Envoy     1.0–5.4 s (from the command's start), then 100 % of
                                   311–587 requests to version 1
faulty canary at 20 %              19–25 % of its step's 460–673 requests failed (500);
                                   after Envoy applied the rollback 619–837 requests,
                                   all to the champion, 0 failed
A/B default rule (30 %)            29.3 / 28.7 / 30.2 / 29.4 / 32.4 % (n 900–921)
A/B header-matched                 100 % of 299–309 to the challenger
failed requests (canary test)      0 of 3177–6591 (rollback test: only the faulty
                                   version's own, during its step)
whole file                         4 min 36 s (platform start 45 s) at load ~14; 5–8 min
                                   when the machine was loaded (load 22–27); with
                                   test_platform.py in the same session the tier took
                                   5 min 10 s (9 tests), this file's tests ~2.6 min of it
=================================  =================================================
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import faultymodels
import httpx
import pytest
import yaml
from resources import model_deployment

from modelship.api import names

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "gwcanary"
RECORD = {"age": 0.04, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04, "s2": -0.03, "s3": -0.04, "s4": -0.003, "s5": 0.02, "s6": -0.02}
#: Requests a second the traffic sends through Envoy (a few workers, paced) while a split is
#: measured, and while a version trains and starts (the CPU is the training's then).
RATE = 80
IDLE_RATE = 10
WORKERS = 8
#: Points a measured share may be off its weight (≥ 3σ at MIN_SAMPLE, see the module docstring).
TOLERANCE = 5.0
MIN_SAMPLE = 900
#: A split is measured only while it is applied: a pause must hold MIN_SAMPLE answers with room
#: for a loaded machine (8 workers below RATE when a round trip passes 0.1 s; 15 s held 906–945).
STEPS = [{"weight": 20, "pause": "30s"}, {"weight": 50, "pause": "30s"}, {"weight": 100, "pause": "5s"}]
ANALYSIS = {
    # The latency bound is loose on purpose: the machine has two shared cores; errors are judged.
    "maxErrorRate": 0.05, "maxLatencyP95Ms": 3000, "minRequests": 10, "interval": "4s", "failureThreshold": 2, "inconclusiveTimeout": "60s",
}
VARIANT_HEADER = "x-variant"


def resource(namespace: str, alpha: float, rollout: dict | None = None) -> dict:
    return model_deployment(
        NAME, namespace,
        # A ridge regression on scikit-learn's diabetes set: trains in seconds; its served copy
        # fails on request when the kubelet hook below sets the fault variable in its pod.
        training={"framework": "sklearn", "estimator": faultymodels.ESTIMATOR, "hyperparameters": {"alpha": alpha}},
        serving={"replicas": 1},
        rollout=rollout or {"strategy": "canary", "canary": {"steps": STEPS}, "analysis": ANALYSIS, "rollbackWindow": "1m"},
    )


# --- what Envoy applies ----------------------------------------------------------------------


def envoy_routes(platform, namespace: str) -> dict[str, dict[str, float]]:
    """Envoy's applied routes for the endpoint, from its admin socket: ``""`` → the default
    (weighted) rule's version → percent, and ``"header=value"`` → the same for each header rule."""
    socket = platform.workdir / "gateway" / "admin.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), timeout=5) as admin:
        dump = admin.get("http://envoy/config_dump", params={"resource": "dynamic_route_configs"}).json()
    prefix = f"/{namespace}/{NAME}"
    found: dict[str, dict[str, float]] = {}
    for config in dump.get("configs", []):
        for host in config.get("route_config", {}).get("virtual_hosts", []):
            for route in host.get("routes", []):
                match = route.get("match", {})
                if prefix not in json.dumps(match) or "route" not in route:
                    continue
                action = route["route"]
                clusters = action.get("weighted_clusters", {}).get("clusters") or [{"name": action.get("cluster", ""), "weight": 1}]
                weights = {_version(c["name"]): float(c.get("weight", 0)) for c in clusters}
                total = sum(weights.values()) or 1
                key = ",".join(f"{h['name']}={h.get('string_match', {}).get('exact', h.get('exact_match', '?'))}" for h in match.get("headers", []))
                found.setdefault(key, {v: round(100 * w / total, 2) for v, w in weights.items() if w > 0})
    return found


def _version(cluster: str) -> str:
    """Contour's cluster name ``namespace/service/port/hash`` → the version the service serves."""
    service = cluster.split("/")[1] if "/" in cluster else cluster
    return service.rsplit("-v", 1)[-1]


@dataclass
class Answer:
    sent: float
    done: float
    status: int
    version: str | None
    variant: str | None
    header: str | None
    detail: str = ""


@dataclass
class Traffic:
    """Paced requests to the endpoint from a few workers, every answer recorded, and a watcher
    recording when Envoy's default route changes. ``header`` (name, value) is sent on every
    ``header_every``-th request."""

    platform: object
    namespace: str
    url: str
    header: tuple[str, str] | None = None
    header_every: int = 0
    #: Requests a second, read by the workers as they go.
    rate: float = IDLE_RATE
    answers: list[Answer] = field(default_factory=list)
    #: (monotonic time Envoy was first seen with it, default route's version → percent)
    applied: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(WORKERS)]
        self._threads.append(threading.Thread(target=self._watch, daemon=True))

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _send(self) -> None:
        with httpx.Client(timeout=10) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                period = WORKERS / self.rate
                with self._lock:
                    self._count += 1
                    count = self._count
                header = self.header if self.header and self.header_every and count % self.header_every == 0 else None
                sent = time.monotonic()
                try:
                    response = client.post(f"{self.url}/predict", json=RECORD, headers=dict([header]) if header else {})
                    body = response.json() if response.status_code == 200 else {}
                    detail = "" if response.status_code == 200 else f"{response.headers.get('server')}: {response.text[:200]}"
                    answer = Answer(sent, time.monotonic(), response.status_code, body.get("version"), body.get("variant"), header and header[1], detail)
                except (httpx.HTTPError, ValueError) as err:
                    answer = Answer(sent, time.monotonic(), 0, None, None, header and header[1], repr(err))
                self.answers.append(answer)
                next_at = max(next_at + period, time.monotonic() - period)
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                current = envoy_routes(self.platform, self.namespace).get("")
            except (httpx.HTTPError, ValueError, OSError):
                current = None
            if current is not None and (not self.applied or self.applied[-1][1] != current):
                self.applied.append((time.monotonic(), current))
            self._stop.wait(0.2)

    # --- reading what happened --------------------------------------------------------------

    def failures(self) -> str:
        """The failed answers against Envoy's timeline (for an assertion's message)."""
        failed = [(round(a.sent, 2), round(a.done, 2), a.status, a.detail) for a in self.answers if a.status != 200]
        return f"failed: {failed}; Envoy applied: {[(round(t, 2), w) for t, w in self.applied]}"

    def windows(self, weights: dict[str, float]) -> list[tuple[float, float]]:
        """(from, to) spans in which Envoy's default route had ``weights``; ``to`` is when the
        next change was seen minus the watcher's period, or now."""
        spans = []
        for index, (start, applied) in enumerate(self.applied):
            if applied == weights:
                end = self.applied[index + 1][0] - 0.25 if index + 1 < len(self.applied) else time.monotonic()
                spans.append((start, end))
        return spans

    def during(self, weights: dict[str, float], header: bool = False) -> list[Answer]:
        spans = self.windows(weights)
        return [a for a in list(self.answers) if (a.header is not None) == header and any(s <= a.sent and a.done <= e for s, e in spans)]

    def wait_applied(self, weights: dict[str, float], timeout: float = 240) -> None:
        self.platform.cluster.wait_until(f"Envoy to apply {weights}", lambda: self.applied and self.applied[-1][1] == weights, timeout=timeout, interval=0.2)

    def wait_sample(self, weights: dict[str, float], n: int, timeout: float = 120) -> list[Answer]:
        return self.platform.cluster.wait_until(f"{n} answers under {weights}", lambda: len(a := self.during(weights)) >= n and a, timeout=timeout, interval=0.5)


def shares(answers: list[Answer]) -> dict[str, float]:
    counted = Counter(a.version for a in answers)
    return {version: round(100 * count / len(answers), 1) for version, count in sorted(counted.items(), key=lambda item: str(item[0]))}


def assert_split(answers: list[Answer], weights: dict[str, float], what: str, report: list[str]) -> None:
    assert len(answers) >= MIN_SAMPLE, f"{what}: only {len(answers)} answers"
    assert all(a.status == 200 for a in answers), Counter(a.status for a in answers)
    observed = shares(answers)
    report.append(f"{what}: weights {weights} → observed {observed} of n={len(answers)}")
    assert set(observed) <= set(weights), (observed, weights)
    for version, weight in weights.items():
        sigma = 100 * math.sqrt(weight / 100 * (1 - weight / 100) / len(answers))
        assert abs(observed.get(version, 0.0) - weight) <= TOLERANCE, f"{what}: version {version} took {observed.get(version, 0.0)}%, not {weight}% ± {TOLERANCE} (σ {sigma:.2f})"


# --- the resource ------------------------------------------------------------------------------


def status_of(platform, namespace: str) -> dict:
    return platform.cluster.kubectl_json("get", "mdep", NAME, "-n", namespace).get("status") or {}


def wait_status(platform, namespace: str, what: str, predicate, timeout: float = 300) -> dict:
    return platform.cluster.wait_until(what, lambda: (s := status_of(platform, namespace)) and predicate(s) and s, timeout=timeout, interval=0.5)


def patch_spec(platform, namespace: str, patch: dict) -> None:
    platform.kubectl("patch", "mdep", NAME, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": patch}))


def retrain(platform, namespace: str, alpha: float, rollout: dict | None = None) -> str:
    """Retrain with another alpha (and this rollout); the version it registered."""
    before = (status_of(platform, namespace).get("lastTraining") or {}).get("modelVersion")
    patch_spec(platform, namespace, {"training": {"hyperparameters": {"alpha": alpha}}, **({"rollout": rollout} if rollout else {})})
    done = wait_status(platform, namespace, "a retrained version", lambda s: (s.get("lastTraining") or {}).get("modelVersion") not in (None, before), timeout=300)
    return done["lastTraining"]["modelVersion"]


def modelship(platform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelship.cli_main", *args], capture_output=True, text=True,
                          env={**os.environ, "KUBECONFIG": str(platform.kubeconfig)}, timeout=60)


@contextlib.contextmanager
def version_1_served(platform, namespace: str) -> Iterator[dict]:
    """Version 1 of the resource serving through the gateway in ``namespace`` (made here, deleted
    after); the kubelet hook lets its pods import the fault-injecting estimator and makes serving
    pods of versions in ``faulty`` fail."""
    faulty: set[str] = set()

    def pod_env(pod: dict, env: dict[str, str]) -> dict[str, str]:
        meta = pod["metadata"]
        if meta.get("namespace") != namespace:
            return {}
        extra = {"PYTHONPATH": faultymodels.with_pythonpath(env)["PYTHONPATH"]}
        labels = meta.get("labels") or {}
        if labels.get(names.COMPONENT_LABEL) == "serving" and labels.get(names.VERSION_LABEL) in faulty:
            extra[faultymodels.FAULT_ENV] = "error"
        return extra

    platform.kubelet.pod_env_hooks.append(pod_env)
    try:  # a setup that fails leaves neither the hook nor the namespace behind
        platform.cluster.create_namespace(namespace)
        begin = time.monotonic()
        platform.cluster.apply(yaml.safe_dump(resource(namespace, alpha=1.0)))
        status = wait_status(platform, namespace, "version 1 to be champion", lambda s: s.get("championVersion") == "1" and s.get("endpoint"))
        assert status["endpoint"] == f"{platform.gateway_url}/{namespace}/{NAME}"
        platform.cluster.wait_until("version 1 through the gateway", lambda: httpx.post(f"{status['endpoint']}/predict", json=RECORD, timeout=10).status_code == 200,
                                    timeout=120, interval=0.5)
        print(f"\nversion 1 answering through Envoy {time.monotonic() - begin:.1f}s after apply")
        yield {"namespace": namespace, "url": status["endpoint"], "faulty": faulty}
    finally:
        platform.kubelet.pod_env_hooks.remove(pod_env)
        platform.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def served(platform):
    with version_1_served(platform, "e2e-gwrollout") as found:
        yield found


def test_a_canary_through_envoy_matches_each_step_is_promoted_and_rolled_back_at_once(platform, served) -> None:
    namespace, url = served["namespace"], served["url"]
    begin = time.monotonic()
    report: list[str] = []
    champion = status_of(platform, namespace)["championVersion"]
    with Traffic(platform, namespace, url) as traffic:
        traffic.wait_applied({champion: 100.0})
        candidate = retrain(platform, namespace, alpha=2.0)
        trained = time.monotonic()
        for step in STEPS:
            weights = {champion: 100.0 - step["weight"], candidate: float(step["weight"])} if step["weight"] < 100 else {candidate: 100.0}
            traffic.wait_applied(weights)
            traffic.rate = RATE  # the candidate is up: measure
            if step["weight"] < 100:  # the 100 % step is judged after the promotion, below
                sample = traffic.wait_sample(weights, MIN_SAMPLE, timeout=60)
                assert_split(sample, weights, f"step {step['weight']}%", report)
                assert {(a.version, a.variant) for a in sample} == {(champion, "champion"), (candidate, "canary")}
        promoted = wait_status(platform, namespace, f"version {candidate} promoted", lambda s: s.get("championVersion") == candidate and s.get("phase") == "Serving", timeout=120)
        rollout = promoted["rollout"]
        assert rollout["phase"] == "Promoted" and rollout["failedChecks"] == 0
        # Judged on the real metrics Prometheus scraped from the candidate's pod.
        assert {c["name"]: c["verdict"] for c in rollout["checks"]} == {"requests": "Successful", "errorRate": "Successful", "latencyP95": "Successful"}
        traffic.wait_applied({candidate: 100.0})
        promoted_at = traffic.applied[-1][0]
        after = traffic.wait_sample({candidate: 100.0}, 300, timeout=60)
        # Envoy never gave the candidate more than the step it was on: the applied weights walk up.
        walked = [w.get(candidate, 0.0) for _, w in traffic.applied]
        assert walked == sorted(walked) and walked[-1] == 100.0, traffic.applied

        # Rollback after the promotion: version {champion} is still warm (rollbackWindow 1m), and
        # Envoy already knows its backend (the route names it at weight 0), so every request moves
        # back at once and none fails on the way.
        asked = time.monotonic()
        rolled = modelship(platform, "rollback", NAME, "-n", namespace)
        assert rolled.returncode == 0, rolled.stderr
        traffic.wait_applied({champion: 100.0}, timeout=30)
        seconds = traffic.applied[-1][0] - asked
        back = traffic.wait_sample({champion: 100.0}, 300, timeout=60)
    assert all(a.status == 200 for a in traffic.answers), traffic.failures()  # no request failed, from start to end
    assert {a.version for a in after} == {candidate} and {a.version for a in back} == {champion}
    assert status_of(platform, namespace)["championVersion"] == champion
    report.append(f"promoted: {len(after)} of {len(after)} requests to version {candidate} (trained → promoted in Envoy {promoted_at - trained:.0f}s)")
    report.append(f"`modelship rollback` → Envoy on version {champion} in {seconds:.1f}s; then {len(back)} of {len(back)} requests to it; "
                  f"{len(traffic.answers)} requests in all, none failed; {time.monotonic() - begin:.0f}s")
    print("\n" + "\n".join(report))


def test_a_faulty_candidate_is_rolled_back_and_envoy_sends_everything_to_the_champion(platform, served) -> None:
    namespace, url = served["namespace"], served["url"]
    begin = time.monotonic()
    status = status_of(platform, namespace)
    champion = status["championVersion"]
    faulty_version = str(int(status["lastTraining"]["modelVersion"]) + 1)
    served["faulty"].add(faulty_version)  # the next version trained serves errors
    with Traffic(platform, namespace, url) as traffic:
        traffic.wait_applied({champion: 100.0})
        candidate = retrain(platform, namespace, alpha=3.0, rollout={"strategy": "canary", "canary": {"steps": STEPS}, "analysis": ANALYSIS})
        assert candidate == faulty_version
        failing = {champion: 80.0, candidate: 20.0}
        traffic.wait_applied(failing)
        traffic.rate = RATE
        rolled = wait_status(platform, namespace, f"version {candidate} rolled back", lambda s: (s.get("rollout") or {}).get("phase") == "RolledBack", timeout=120)
        traffic.wait_applied({champion: 100.0}, timeout=30)
        back_at = traffic.applied[-1][0]
        time.sleep(10)  # users keep sending after the rollback
    promoted = next(c for c in rolled["conditions"] if c["type"] == "Promoted")
    assert promoted["reason"] == "AnalysisFailed" and "errorRate" in promoted["message"], promoted
    assert rolled["championVersion"] == champion
    during = traffic.during(failing)
    errors = [a for a in during if a.status != 200]
    # While the faulty version had its 20 %, its answers were the users' errors (500s from the model server).
    assert errors and {a.status for a in errors} == {500}
    after = [a for a in traffic.answers if a.sent >= back_at]
    assert len(after) >= 300
    assert [a for a in after if a.status != 200] == []  # not one failed request once Envoy had the rollback
    assert {a.version for a in after} == {champion}
    print(f"\nrollback: step 20% served {len(during)} requests, {len(errors)} failed ({100 * len(errors) / max(1, len(during)):.1f}%); "
          f"after Envoy applied the rollback {len(after)} requests, all to version {champion}, 0 failed; {time.monotonic() - begin:.0f}s")


def test_an_ab_test_through_envoy_pins_header_requests_and_splits_the_rest(platform, served) -> None:
    namespace, url = served["namespace"], served["url"]
    begin = time.monotonic()
    report: list[str] = []
    champion = status_of(platform, namespace)["championVersion"]
    variants = [
        {"name": "champion", "modelVersion": "champion", "weight": 70},
        {"name": "challenger", "modelVersion": "challenger", "weight": 30, "headerMatch": {"name": VARIANT_HEADER, "value": "challenger"}},
    ]
    with Traffic(platform, namespace, url, header=(VARIANT_HEADER, "challenger"), header_every=4) as traffic:
        traffic.wait_applied({champion: 100.0})
        challenger = retrain(platform, namespace, alpha=5.0, rollout={"strategy": "abTest", "abTest": {"variants": variants}, "analysis": ANALYSIS})
        weights = {champion: 70.0, challenger: 30.0}
        traffic.wait_applied(weights)
        traffic.rate = RATE
        assert envoy_routes(platform, namespace).get(f"{VARIANT_HEADER}=challenger") == {challenger: 100.0}
        split = traffic.wait_sample(weights, MIN_SAMPLE, timeout=90)
        pinned = traffic.during(weights, header=True)
        testing = wait_status(platform, namespace, "per-variant figures", lambda s: all((v.get("requests") or 0) > 0 for v in (s.get("rollout") or {}).get("variants") or [{}]), timeout=60)
        assert testing["rollout"]["phase"] == "ABTesting" and testing["championVersion"] == champion
        assert modelship(platform, "promote", NAME, "-n", namespace, "--variant", "challenger").returncode == 0
        wait_status(platform, namespace, "the challenger to be champion", lambda s: s.get("championVersion") == challenger and s.get("phase") == "Serving", timeout=60)
        traffic.wait_applied({challenger: 100.0}, timeout=30)
        after = traffic.wait_sample({challenger: 100.0}, 200, timeout=60)
    assert_split(split, weights, "A/B default rule", report)
    assert len(pinned) >= 200 and all(a.status == 200 for a in pinned)
    assert {(a.version, a.variant) for a in pinned} == {(challenger, "challenger")}  # header-matched: only their variant
    assert {(a.version, a.variant) for a in split} == {(champion, "champion"), (challenger, "challenger")}
    assert {a.version for a in after} == {challenger} and all(a.status == 200 for a in after)
    report.append(f"A/B header-matched: {len(pinned)} of {len(pinned)} to the challenger (version {challenger}); promoted: {len(after)} of {len(after)} to it; "
                  f"{time.monotonic() - begin:.0f}s")
    print("\n" + "\n".join(report))
