"""Manual approval of a canary on the platform, every request through the gateway: the real
operator walks a canary with ``approval: manual``, the versions are trained and served by pods of
the process kubelet, the analysis reads the platform's Prometheus, and the traffic goes to
``status.endpoint`` (Envoy, programmed by Contour from the operator's HTTPRoute). The helpers
(traffic, Envoy's applied route, the resource) are test_gateway_rollout.py's; what the traffic
saw is judged against what Envoy was told, as there.

The canary walks 50 % → 100 %. Canary steps must end at 100 % (``CanarySpec``), so the approval
gate holds the candidate at 100 % of the requests while version 1 stays champion: its pods up and
named in the route at weight 0 (Envoy keeps knowing its backend), the MLflow alias ``champion``
still on it. What a
person's approval changes is who is champion, not where requests go; the test shows that, while
the analyses go on passing, nothing is promoted, and that ``modelship approve`` then promotes
without moving a request or restarting the candidate's pod.

Figures of the last runs (printed with ``-s``), n = requests counted under that weight:

=================================  =================================================
step 50 %                          49.8 / 48.7 / 49.6 / 52.4 / 51.0 / 50.4 % to
                                   version 2 (n 900–933)
awaiting approval, 100 %           100 % of 904–938 requests to version 2 over 12 s,
                                   analyses passing, champion and alias on version 1
``modelship approve``              the command 1.3–6.7 s (a Python process starting, on
                                   a loaded machine); its return → champion 0.1–0.2 s;
                                   then 320–332 requests, all to version 2;
                                   0 of 3539–4116 requests failed in all
this test                          67–130 s (version 1's training and serving 22–48 s
                                   of it), file 2–3.3 min with the platform's start
                                   (load 5–14); with test_gateway_rollout.py in the
                                   session the two files took 6 min 47 s (load ~14);
                                   the whole e2e tier (11 tests) 6 min 31 s (load ~8)
=================================  =================================================
"""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from e2e.test_gateway_rollout import (
    ANALYSIS,
    MIN_SAMPLE,
    NAME,
    RATE,
    Traffic,
    assert_split,
    modelship,
    retrain,
    status_of,
    version_1_served,
    wait_status,
)
from e2e.test_platform import pods
from modelship.api import names
from modelship.api.v1alpha1 import Phase, RolloutPhase
from modelship.operator import builders
from modelship.operator.rollout import parse_time

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMESPACE = "e2e-gwapproval"
#: The 50 % step is long enough for MIN_SAMPLE answers at RATE with room for a loaded machine.
STEPS = [{"weight": 50, "pause": "20s"}, {"weight": 100, "pause": "5s"}]
ROLLOUT = {"strategy": "canary", "canary": {"steps": STEPS}, "analysis": ANALYSIS, "approval": "manual", "rollbackWindow": "1m"}


def events(platform, namespace: str, reason: str) -> list[dict]:
    found = platform.cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={NAME},reason={reason}")
    return found["items"]


def route_backends(platform, namespace: str) -> dict[str, int]:
    """The HTTPRoute's default rule: every backend Service → its weight, 0 included."""
    route = platform.cluster.kubectl_json("get", "httproute", NAME, "-n", namespace)
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]}


def test_a_manual_canary_waits_at_its_last_step_through_envoy_until_approved(platform) -> None:
    begin = time.monotonic()
    report: list[str] = []
    with version_1_served(platform, NAMESPACE) as served:
        namespace, url = served["namespace"], served["url"]
        registry = MlflowClient(tracking_uri=platform.mlflow.url)
        model_name = f"{namespace}-{NAME}"
        champion = status_of(platform, namespace)["championVersion"]
        with Traffic(platform, namespace, url) as traffic:
            traffic.wait_applied({champion: 100.0})
            candidate = retrain(platform, namespace, alpha=2.0, rollout=ROLLOUT)
            half = {champion: 50.0, candidate: 50.0}
            whole = {candidate: 100.0}
            traffic.wait_applied(half)
            traffic.rate = RATE

            # An approval before the gate: the CLI refuses it and changes nothing on the resource.
            early = modelship(platform, "approve", NAME, "-n", namespace)
            assert early.returncode == 1, (early.stdout, early.stderr)
            assert "is not waiting for an approval (rollout phase: Progressing); nothing changed" in early.stderr, early.stderr
            annotations = platform.cluster.kubectl_json("get", "mdep", NAME, "-n", namespace)["metadata"].get("annotations") or {}
            assert names.APPROVE_ANNOTATION not in annotations

            step = traffic.wait_sample(half, MIN_SAMPLE, timeout=90)
            assert_split(step, half, "step 50%", report)

            # The last step, then the gate: the status says so and the route keeps the last step's split.
            traffic.wait_applied(whole)
            waiting = wait_status(platform, namespace, "the approval wait", lambda s: s.get("phase") == Phase.awaiting_approval.value, timeout=120)
            gate = time.monotonic()
            assert waiting["rollout"]["phase"] == RolloutPhase.awaiting_approval.value and waiting["rollout"]["awaitingApproval"]
            assert waiting["championVersion"] == champion and waiting["canaryVersion"] == candidate and waiting["canaryWeight"] == 100
            assert {(t["version"], t["weight"], t["role"]) for t in waiting["traffic"]} == {(champion, 0, "champion"), (candidate, 100, "canary")}
            progressing = next(c for c in waiting["conditions"] if c["type"] == "Progressing")
            assert (progressing["status"], progressing["reason"]) == ("True", "AwaitingApproval") and "modelship approve" in progressing["message"]
            # The champion is still in the route at weight 0, so its backend stays known to Envoy.
            assert route_backends(platform, namespace) == {builders.serving_name(NAME, champion): 0, builders.serving_name(NAME, candidate): 100}
            [candidate_pod] = pods(platform, namespace, f"{names.VERSION_LABEL}={candidate}")

            # While it waits: every request goes to the candidate, Envoy's route does not change,
            # the analysis goes on and passes, and nothing is promoted.
            def waited() -> list | None:
                answers = [a for a in traffic.during(whole) if a.sent >= gate]
                return answers if len(answers) >= MIN_SAMPLE else None

            held = platform.cluster.wait_until(f"{MIN_SAMPLE} answers while awaiting approval", waited, timeout=90, interval=0.5)
            assert_split(held, whole, "awaiting approval", report)
            gate_analysis = parse_time(waiting["rollout"].get("lastAnalysisAt"))
            analysed = wait_status(platform, namespace, "an analysis after the gate",
                                   lambda s: (parse_time(s["rollout"].get("lastAnalysisAt")) or gate_analysis) > gate_analysis, timeout=30)
            still = status_of(platform, namespace)
            assert still["phase"] == Phase.awaiting_approval.value and still["championVersion"] == champion, still
            assert still["rollout"]["failedChecks"] == 0 and {c["verdict"] for c in analysed["rollout"]["checks"]} == {"Successful"}, analysed["rollout"]
            assert registry.get_model_version_by_alias(model_name, "champion").version == champion
            assert traffic.applied[-1][1] == whole and traffic.applied[-1][0] < gate, traffic.applied
            assert events(platform, namespace, "AwaitingApproval")
            waited_seconds = time.monotonic() - gate

            # The approval, as a person gives it.
            asked = time.monotonic()
            approved = modelship(platform, "approve", NAME, "-n", namespace)
            returned = time.monotonic()
            assert approved.returncode == 0, approved.stderr
            assert f"version {candidate} approved" in approved.stdout
            promoted = wait_status(platform, namespace, f"version {candidate} promoted",
                                   lambda s: s.get("championVersion") == candidate and s.get("phase") == Phase.serving.value, timeout=60)
            promoted_at = time.monotonic()
            after = platform.cluster.wait_until("300 answers after the promotion",
                                                lambda: len(a := [x for x in traffic.during(whole) if x.sent >= promoted_at]) >= 300 and a, timeout=60, interval=0.5)
        assert all(a.status == 200 for a in traffic.answers), traffic.failures()  # not one request failed, from start to end

        assert promoted["rollout"]["phase"] == RolloutPhase.promoted.value and not promoted["rollout"].get("awaitingApproval")
        assert promoted["rollout"]["previousChampion"] == champion
        condition = next(c for c in promoted["conditions"] if c["type"] == "Promoted")
        assert (condition["status"], condition["reason"]) == ("True", "Promoted") and "(approved)" in condition["message"], condition
        assert registry.get_model_version_by_alias(model_name, "champion").version == candidate
        messages = platform.cluster.wait_until("the Promoted Event", lambda: [e["message"] for e in events(platform, namespace, "Promoted")], timeout=30, interval=0.5)
        assert any(f"version {candidate} is champion" in m and "(approved)" in m for m in messages), messages
        # Envoy had 100 % on the candidate before and after: the approval moved no request.
        assert traffic.applied[-1][1] == whole and traffic.applied[-1][0] < gate, traffic.applied
        assert {a.version for a in held} == {candidate} and {a.version for a in after} == {candidate}
        assert {a.variant for a in held} == {"canary"}
        # Nor did it restart the candidate: its pod is the one that served the canary.
        [serving_pod] = pods(platform, namespace, f"{names.VERSION_LABEL}={candidate}")
        assert serving_pod["metadata"]["uid"] == candidate_pod["metadata"]["uid"]
        assert route_backends(platform, namespace) == {builders.serving_name(NAME, champion): 0, builders.serving_name(NAME, candidate): 100}  # warm for a rollback

    report.append(f"awaited {waited_seconds:.0f}s with the champion still version {champion}")
    report.append(f"`modelship approve` ({returned - asked:.1f}s) → version {candidate} champion {promoted_at - returned:.1f}s later; then {len(after)} of {len(after)} requests to it; "
                  f"{len(traffic.answers)} requests in all, none failed; {time.monotonic() - begin:.0f}s")
    print("\n" + "\n".join(report))
