"""The reconcile decision as a table of situations: what exists → what should change."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from modelship.api import ModelDeployment
from modelship.api.results import TrainingOutcome, TrainingResult
from modelship.operator import builders
from modelship.operator.conditions import condition
from modelship.operator.config import OperatorConfig
from modelship.operator.controller import status_patch
from modelship.operator.observe import JobState, Observed, ServingState, job_state, parse_result
from modelship.api.v1alpha1 import ModelDeploymentStatus
from modelship.operator import reconcile
from spec_cases import base_resource

CONFIG = OperatorConfig()
NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.timezone.utc)


def plan(*args, **kwargs) -> reconcile.Plan:
    """``reconcile.plan``, and every status it produces must survive the typed status model with
    unknown fields forbidden: the API server silently drops what the CRD does not declare."""
    made = reconcile.plan(*args, **kwargs)
    assert ModelDeploymentStatus.model_validate(made.status).to_wire() == made.status
    assert_settled(made, *args, **kwargs)
    return made


def assert_settled(made: reconcile.Plan, resource, status, observed, config, now, *_, **__) -> None:
    """Planning again from the status a plan wrote (no analysis is due then: it was just made)
    changes nothing more: the operator does not reconcile the watch event of its own status
    write (controller.Controller.own_status_write), so no step may wait for that second pass.
    (Objects it creates or applies come back through their own watch events, reconciled.)"""
    again = reconcile.plan(resource, made.status, observed, config, now)
    assert status_patch(made.status, again.status) == {}
    assert again.promote_version is None and [e.reason for e in again.events] == []


def md() -> ModelDeployment:
    raw = base_resource()
    raw["metadata"].update(uid="u1", generation=1)
    return ModelDeployment.model_validate(raw)


RESOURCE = md()
HASH = builders.training_hash(RESOURCE)
JOB = builders.training_job_name("california-housing", HASH)


def training(finished: bool = True, version: str | None = "1", passed: bool = True, **extra):
    last = {"job": JOB, "specHash": HASH, "generation": 1, "startedAt": "2026-11-22T07:00:00Z"}
    if finished:
        last["finishedAt"] = "2026-11-22T07:05:00Z"
        last["modelVersion"] = version
        last["gate"] = {"passed": passed, "reason": ""}
    return {**last, **extra}


def succeeded(version="1"):
    return JobState(JOB, finished=True, succeeded=True, result=TrainingResult(outcome=TrainingOutcome.succeeded, version=version, run_id="r", metrics={"r2": 0.85}))


def kinds(objects):
    return sorted((o["kind"], o["metadata"]["name"]) for o in objects)


def test_new_resource_creates_one_job_and_reports_training():
    p = plan(RESOURCE, {}, Observed(), CONFIG, NOW)
    assert kinds(p.create) == [("Job", JOB)]
    assert p.status["phase"] == "Training"
    assert condition(p.status["conditions"], "Progressing")["reason"] == "Training"
    assert p.status["lastTraining"]["specHash"] == HASH and p.status["observedGeneration"] == 1
    assert [e.reason for e in p.events] == ["TrainingStarted"]


def test_job_already_there_is_not_created_again():
    # The operator died after creating the Job but before writing the status.
    p = plan(RESOURCE, {}, Observed(jobs={JOB: JobState(JOB)}), CONFIG, NOW)
    assert p.create == [] and p.status["phase"] == "Training"


def test_running_job_changes_nothing():
    status = plan(RESOURCE, {}, Observed(jobs={JOB: JobState(JOB)}), CONFIG, NOW).status
    again = plan(RESOURCE, status, Observed(jobs={JOB: JobState(JOB)}), CONFIG, dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.timezone.utc))
    assert again.create == [] and again.events == [] and status_patch(status, again.status) == {}


def test_finished_job_registers_and_deploys_the_first_version():
    p = plan(RESOURCE, {"lastTraining": training(finished=False)}, Observed(jobs={JOB: succeeded("1")}), CONFIG, NOW)
    assert kinds(p.apply) == [("Deployment", "california-housing-v1"), ("HTTPRoute", "california-housing"), ("HorizontalPodAutoscaler", "california-housing-v1"), ("Service", "california-housing-v1")]
    assert p.status["lastTraining"]["modelVersion"] == "1" and p.status["lastTraining"]["metrics"] == {"r2": 0.85}
    assert p.status["phase"] == "Deploying" and p.promote_version is None
    assert condition(p.status["conditions"], "Trained")["status"] == "True"
    assert p.training_outcome == "TrainingSucceeded"
    assert condition(p.status["conditions"], "Ready")["reason"] == "NoChampion"
    # The first version is nobody's canary: its pods answer (and are measured) as the champion.
    deployment = next(o for o in p.apply if o["kind"] == "Deployment")
    assert deployment["metadata"]["labels"]["modelship.io/variant"] == "champion"


def _decision(champion, candidate, variants=None):
    from modelship.api.v1alpha1 import RolloutStatus
    from modelship.operator.rollout import RolloutDecision

    state = RolloutStatus(candidate=candidate, phase="Progressing") if candidate else None
    return RolloutDecision(weights={}, champion=champion, rollout=state, variants=variants or {})


@pytest.mark.parametrize(
    ("version", "decision", "existing", "variant"),
    [
        ("1", _decision(None, "1"), None, "champion"),  # the first version, before it is promoted
        ("2", _decision("1", "2"), None, "canary"),  # a candidate beside a champion
        ("1", _decision("1", "2"), None, "champion"),
        ("2", _decision("2", None), "canary", "canary"),  # a promoted canary keeps its label (no restart)
        ("2", _decision("1", "2", {"2": "challenger"}), "canary", "challenger"),  # an A/B arm is named after its variant
        ("1", _decision("1", "2", {"1": "champion", "2": "challenger"}), "canary", "champion"),
    ],
)
def test_the_variant_a_versions_pods_carry(version, decision, existing, variant):
    assert reconcile.serving_variant(version, decision, existing) == variant


def test_ready_candidate_becomes_champion():
    status = {"lastTraining": training()}
    p = plan(RESOURCE, status, Observed(serving={"1": ServingState("1", True, "champion")}), CONFIG, NOW)
    assert p.promote_version == "1"
    assert p.status["championVersion"] == "1" and p.status["phase"] == "Serving"
    assert p.status["endpoint"] == "http://localhost:8000/default/california-housing"
    assert p.status["traffic"] == [{"version": "1", "weight": 100, "role": "champion"}]
    assert condition(p.status["conditions"], "Ready")["status"] == "True"


def immediate() -> ModelDeployment:
    resource = md()
    resource.spec.rollout.strategy = "immediate"
    return resource


def test_second_version_replaces_the_champion_once_ready():
    status = {"lastTraining": training(version="2"), "championVersion": "1"}
    waiting = plan(immediate(), status, Observed(serving={"1": ServingState("1", True), "2": ServingState("2", False)}), CONFIG, NOW)
    assert waiting.promote_version is None and waiting.status["championVersion"] == "1"
    assert waiting.status["phase"] == "Deploying" and waiting.delete == []
    ready = plan(immediate(), status, Observed(serving={"1": ServingState("1", True), "2": ServingState("2", True)}), CONFIG, NOW)
    assert ready.promote_version == "2" and ready.status["championVersion"] == "2"
    # The previous champion stays warm (one replica, no traffic) for the rollback window.
    warm = [o for o in ready.apply if o["kind"] == "Deployment" and o["metadata"]["name"] == "california-housing-v1"]
    assert warm and warm[0]["spec"]["replicas"] == 1 and ready.delete == [("autoscaling/v2", "HorizontalPodAutoscaler", "california-housing-v1")]
    assert ready.status["rollout"]["previousChampion"] == "1" and ready.status["rollout"]["warmUntil"] == "2026-11-22T08:30:00Z"
    assert ready.requeue_after == 1800
    later = plan(immediate(), ready.status, Observed(serving={"1": ServingState("1", True), "2": ServingState("2", True)}), CONFIG, NOW + dt.timedelta(minutes=31))
    assert ("apps/v1", "Deployment", "california-housing-v1") in later.delete
    assert ("v1", "Service", "california-housing-v1") in later.delete


@pytest.mark.parametrize(
    "job, reason, phase_with_champion",
    [
        (JobState(JOB, True, False, result=TrainingResult(outcome=TrainingOutcome.gate_failed, version="2", reason="r2 0.7 < 0.8")), "QualityGateFailed", "Degraded"),
        (JobState(JOB, True, False, result=TrainingResult(outcome=TrainingOutcome.invalid_input, reason="column 'x' missing")), "InvalidInput", "Degraded"),
        (JobState(JOB, True, False, failure="DeadlineExceeded: too long"), "TrainingFailed", "Degraded"),
        (JobState(JOB, True, True), "ResultMissing", "Degraded"),
    ],
)
def test_failed_training_keeps_the_champion_serving(job, reason, phase_with_champion):
    status = {"lastTraining": training(finished=False), "championVersion": "1"}
    p = plan(RESOURCE, status, Observed(jobs={JOB: job}, serving={"1": ServingState("1", True)}), CONFIG, NOW)
    assert condition(p.status["conditions"], "Trained")["reason"] == reason
    assert p.training_outcome == reason
    assert p.status["championVersion"] == "1" and p.status["phase"] == phase_with_champion
    assert condition(p.status["conditions"], "Degraded")["status"] == "True"
    assert kinds(p.apply)[0] == ("Deployment", "california-housing-v1") and p.delete == []
    assert p.events[0].type == "Warning"
    # Without a champion the same failure is a Failed resource.
    alone = plan(RESOURCE, {"lastTraining": training(finished=False)}, Observed(jobs={JOB: job}), CONFIG, NOW)
    assert alone.status["phase"] == "Failed" and alone.apply == []


def test_spec_change_starts_a_new_job_and_stops_the_stale_one():
    old = JobState("california-housing-train-old")
    status = {"lastTraining": {"job": old.name, "specHash": "old", "startedAt": "t"}, "championVersion": "1"}
    p = plan(RESOURCE, status, Observed(jobs={old.name: old}, serving={"1": ServingState("1", True)}), CONFIG, NOW)
    assert kinds(p.create) == [("Job", JOB)]
    assert ("batch/v1", "Job", old.name) in p.delete
    assert p.status["phase"] == "Training" and p.status["championVersion"] == "1"


def test_vanished_job_is_started_again():
    p = plan(RESOURCE, {"lastTraining": training(finished=False)}, Observed(), CONFIG, NOW)
    assert kinds(p.create) == [("Job", JOB)]


def test_conditions_keep_their_transition_time_when_nothing_changes():
    first = plan(RESOURCE, {"lastTraining": training()}, Observed(serving={"1": ServingState("1", True)}), CONFIG, NOW).status
    second = plan(RESOURCE, first, Observed(serving={"1": ServingState("1", True)}), CONFIG, dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)).status
    assert status_patch(first, second) == {}


def test_status_patch_nulls_removed_keys():
    assert status_patch({"canaryVersion": "2", "phase": "Deploying"}, {"phase": "Serving"}) == {"phase": "Serving", "canaryVersion": None}


def test_status_patch_nulls_keys_removed_from_nested_objects():
    finished = {"job": "a", "finishedAt": "t1", "modelVersion": "1", "metrics": {"r2": 0.8}}
    started = {"job": "b", "startedAt": "t2"}
    patch = status_patch({"lastTraining": finished}, {"lastTraining": started})
    assert patch == {"lastTraining": {"job": "b", "startedAt": "t2", "finishedAt": None, "modelVersion": None, "metrics": None}}


def _merge(target, patch):
    """RFC 7386, as the API server applies it."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def test_status_patch_applied_reproduces_the_new_status():
    old = plan(RESOURCE, {"lastTraining": training()}, Observed(serving={"1": ServingState("1", True)}), CONFIG, NOW).status
    changed = md()
    changed.spec.training.hyperparameters["max_depth"] = 3
    new = plan(changed, old, Observed(serving={"1": ServingState("1", True)}), CONFIG, NOW).status
    assert _merge(old, status_patch(old, new)) == new


def _pod(message, exit_code, finished="2026-11-22T07:05:00Z"):
    return {"status": {"containerStatuses": [{"name": "train", "state": {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": finished}}}]}}


def _job(condition_type):
    return {"metadata": {"name": JOB, "labels": {"modelship.io/spec-hash": HASH}}, "status": {"conditions": [{"type": condition_type, "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}


def test_job_state_reads_the_result_from_the_termination_message():
    result = TrainingResult(outcome=TrainingOutcome.succeeded, version="4", metrics={"r2": 0.9})
    state = job_state(_job("Complete"), [_pod(result.model_dump_json(by_alias=True), 0)])
    assert state.finished and state.succeeded and state.result.version == "4"


def test_job_state_of_a_crash_keeps_the_log_tail():
    state = job_state(_job("Failed"), [_pod("Traceback ...\nMemoryError", 1)])
    assert state.finished and not state.succeeded and state.result is None
    assert state.failure.startswith("BackoffLimitExceeded") and "MemoryError" in state.message


@pytest.mark.parametrize("interim", ["FailureTarget", "SuccessCriteriaMet"])
def test_job_winding_down_is_not_finished_yet(interim):
    # Its pods may not carry their termination message yet; wait for Complete or Failed.
    assert not job_state(_job(interim), []).finished


def test_job_state_of_a_running_job():
    assert not job_state({"metadata": {"name": JOB, "labels": {}}, "status": {"active": 1}}, []).finished


@pytest.mark.parametrize("message", [None, "", "not json", json.dumps({"outcome": "Nope"}), "{truncated"])
def test_parse_result_rejects_non_results(message):
    assert parse_result(message) is None


def test_every_status_field_is_declared():
    # The wrapper above checks every plan of this module; this one shows that it would catch an
    # undeclared field.
    with pytest.raises(ValueError, match="rollout.bogus"):
        ModelDeploymentStatus.model_validate({"rollout": {"candidate": "2", "bogus": 1}})


def test_ab_test_labels_each_variants_pods_and_routes_the_header_first():
    from spec_cases import ab_resource

    raw = ab_resource()
    raw["metadata"].update(uid="u2", generation=1, namespace="default")
    resource = ModelDeployment.model_validate(raw)
    spec_hash = builders.training_hash(resource)
    last = {"job": "j", "specHash": spec_hash, "startedAt": "t", "finishedAt": "t", "modelVersion": "2", "gate": {"passed": True}}
    serving = {"1": ServingState("1", True, "champion"), "2": ServingState("2", True, "canary")}
    p = plan(resource, {"lastTraining": last, "championVersion": "1"}, Observed(serving=serving), CONFIG, NOW)
    variants = {o["metadata"]["name"]: o["metadata"]["labels"]["modelship.io/variant"] for o in p.apply if o["kind"] == "Deployment"}
    assert variants == {f"{resource.metadata.name}-v1": "champion", f"{resource.metadata.name}-v2": "challenger"}
    route = next(o for o in p.apply if o["kind"] == "HTTPRoute")
    first, default = route["spec"]["rules"]
    assert first["matches"][0]["headers"] == [{"type": "Exact", "name": "x-variant", "value": "challenger"}]
    assert [b["weight"] for b in default["backendRefs"]] == [80, 20]
    assert p.status["phase"] == "Progressing" and p.status["rollout"]["phase"] == "ABTesting" and p.promote_version is None


def _canary_walk(errors: float, until: float = 900) -> list[reconcile.Plan]:
    """The sample's canary (2m, 5m, 1m steps; analysis every 30 s) of version 2 over champion 1,
    planned the way the controller does: whenever something is due, measured when an analysis is."""
    from modelship.monitoring.analysis import CHECK_ERROR_RATE, CHECK_LATENCY_P95, CHECK_REQUESTS
    from modelship.operator import rollout

    status = {"lastTraining": training(version="2"), "championVersion": "1"}
    serving = Observed(serving={"1": ServingState("1", True, "champion"), "2": ServingState("2", True, "canary")})
    plans, seconds = [], 0.0
    while seconds < until:
        now = NOW + dt.timedelta(seconds=seconds)
        state = reconcile.rollout_state(status)
        sample = None
        if rollout.analysis_due(RESOURCE.spec.rollout, state, now) is not None:
            sample = rollout.AnalysisSample(now, (rollout.Measurement(CHECK_REQUESTS, 500), rollout.Measurement(CHECK_ERROR_RATE, errors), rollout.Measurement(CHECK_LATENCY_P95, 0.02)))
        made = plan(RESOURCE, status, serving, CONFIG, now, sample)
        plans.append(made)
        status = made.status
        if made.requeue_after is None:
            break
        seconds += made.requeue_after
    return plans


def test_canary_walks_its_steps_on_time_and_promotes_each_plan_settled():
    plans = _canary_walk(errors=0.0)
    weights = [p.status.get("canaryWeight") for p in plans]
    steps = [w for i, w in enumerate(weights) if w is not None and (i == 0 or weights[i - 1] != w)]
    assert steps == [10, 50, 100]
    promoted = [p for p in plans if p.promote_version]
    assert [p.promote_version for p in promoted] == ["2"] and promoted[0].status["championVersion"] == "2"
    # Each step lasted exactly its pause: the plans asked to look again at the pause's end.
    started = [p.status["rollout"]["stepStartedAt"] for p in plans if p.status.get("rollout", {}).get("stepStartedAt")]
    assert sorted(set(started)) == ["2026-11-22T08:00:00Z", "2026-11-22T08:02:00Z", "2026-11-22T08:07:00Z"]


def test_failing_canary_rolls_back_each_plan_settled():
    plans = _canary_walk(errors=0.5, until=120)
    rolled = next(p for p in plans if (p.status.get("rollout") or {}).get("phase") == "RolledBack")
    assert rolled.status["championVersion"] == "1" and rolled.promote_version is None
    assert condition(rolled.status["conditions"], "Promoted")["reason"] == "AnalysisFailed"


def _owned(kind: str, name: str, owner: str | None = "md", namespace: str = "ns", **extra) -> dict:
    labels = {"modelship.io/deployment": owner} if owner else {}
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels, "managedFields": [{"manager": "x"}], **extra}}


@pytest.mark.parametrize(
    ("events", "jobs", "deployments"),
    [
        ([(None, "Job", _owned("Job", "j1")), ("ADDED", "Deployment", _owned("Deployment", "md-v1"))], ["j1"], ["md-v1"]),
        # A later event replaces the body; DELETED removes it.
        ([("ADDED", "Deployment", _owned("Deployment", "md-v1")), ("MODIFIED", "Deployment", _owned("Deployment", "md-v1", generation=2))], [], ["md-v1"]),
        ([("ADDED", "Job", _owned("Job", "j1")), ("DELETED", "Job", _owned("Job", "j1"))], [], []),
        # Other owners, other namespaces and unlabelled objects are not this resource's.
        ([("ADDED", "Job", _owned("Job", "j2", owner="other")), ("ADDED", "Job", _owned("Job", "j3", namespace="ns2")), ("ADDED", "Job", _owned("Job", "j4", owner=None))], [], []),
    ],
)
def test_owned_objects_follow_the_watch(events, jobs, deployments):
    from modelship.operator.observe import OwnedObjects

    owned = OwnedObjects()
    for event_type, kind, obj in events:
        owned.seen(event_type, kind, obj)
    assert [o["metadata"]["name"] for o in owned.of("ns", "md", "Job")] == jobs
    assert [o["metadata"]["name"] for o in owned.of("ns", "md", "Deployment")] == deployments
    assert all("managedFields" not in o["metadata"] for o in owned.of("ns", "md", "Deployment"))


def test_owned_objects_load_a_listing_and_drop_what_the_operator_deletes():
    from modelship.operator.observe import OwnedObjects

    owned = OwnedObjects()
    assert not owned.primed
    owned.load({"Job": [_owned("Job", "j1")], "Deployment": [_owned("Deployment", "md-v1"), _owned("Deployment", "md-v2")]})
    assert owned.primed and len(owned.of("ns", "md", "Deployment")) == 2
    owned.drop("ns", "md", "Deployment", "md-v1")
    assert [o["metadata"]["name"] for o in owned.of("ns", "md", "Deployment")] == ["md-v2"]
    # The same parsing as a listing: what the decisions see does not depend on where it came from.
    deployment = {**_owned("Deployment", "md-v3"), "spec": {"replicas": 1}, "status": {"readyReplicas": 1, "updatedReplicas": 1}}
    deployment["metadata"]["labels"]["modelship.io/version"] = "3"
    owned.seen("ADDED", "Deployment", deployment)
    assert serving_from(owned) == {"3": True}  # md-v2 carries no version label


def serving_from(owned) -> dict[str, bool]:
    from modelship.operator.observe import serving_state

    return {s.version: s.ready for s in map(serving_state, owned.of("ns", "md", "Deployment")) if s.version}
