"""The retrain policy as tables: alerts recorded on the status, and what each reconcile decides
(retrainOnDrift, retrainOnQualityDrop, cooldown, dedupe, in-flight guard, global limit, schedule, manual requests);
then the same through reconcile.plan (the Job it creates)."""

from __future__ import annotations

import datetime as dt

import pytest

from modelship.api import ModelDeployment
from modelship.api import cron
from modelship.api.v1alpha1 import HANDLED_ALERTS_LIMIT, ModelDeploymentStatus
from modelship.operator import builders, retrain
from modelship.operator.conditions import condition
from modelship.operator.config import OperatorConfig
from modelship.operator.observe import JobState, Observed, ServingState
from modelship.operator.reconcile import plan
from spec_cases import base_resource

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.timezone.utc)
NOW_TEXT = "2026-11-22T08:00:00Z"
FIRING = retrain.DriftAlert(firing=True, fingerprint="f1", starts_at="2026-11-22T07:50:00Z", version="3", features="median_income=0.812")
DRIFT_REQUEST = {"trigger": "drift", "reason": "drift", "fingerprint": "f1", "startsAt": FIRING.starts_at, "requestedAt": NOW_TEXT, "force": False}
QUALITY = retrain.DriftAlert(firing=True, fingerprint="q1", starts_at="2026-11-22T07:55:00Z", version="3", trigger=retrain.TRIGGER_QUALITY, detail="Live mae of housing is 0.93, past its threshold")
QUALITY_REQUEST = {**DRIFT_REQUEST, "trigger": "quality", "reason": "quality", "fingerprint": "q1", "startsAt": QUALITY.starts_at}


def at(minutes_ago: float) -> str:
    return retrain.format_time(NOW - dt.timedelta(minutes=minutes_ago))


# --- recording alerts -------------------------------------------------------------------


def test_a_firing_alert_records_drift_and_one_pending_request():
    update = retrain.record_alert({}, FIRING, NOW_TEXT)
    assert update["drift"] == {"active": True, "features": "median_income=0.812", "since": FIRING.starts_at, "version": "3"}
    assert update["retrain"]["pending"]["trigger"] == "drift" and update["retrain"]["pending"]["fingerprint"] == "f1"
    assert "median_income=0.812" in update["retrain"]["pending"]["reason"]
    assert update["retrain"]["handledAlerts"] == ["f1@2026-11-22T07:50:00Z"]
    # The wire form is what the typed status accepts (the API server drops undeclared fields).
    ModelDeploymentStatus.model_validate(update)


def test_the_same_alert_again_changes_nothing_even_after_its_request_was_taken():
    status = retrain.record_alert({}, FIRING, NOW_TEXT)
    assert retrain.record_alert(status, FIRING, NOW_TEXT) is None
    status["retrain"]["pending"] = None  # started (or dropped) meanwhile
    assert retrain.record_alert(status, FIRING, "2026-11-22T08:30:00Z") is None


@pytest.mark.parametrize(
    ("alert", "expect_new_request"),
    [
        (retrain.DriftAlert(True, "f1", "2026-11-22T09:00:00Z"), True),  # fired again later: a new alert
        (retrain.DriftAlert(True, "f2", FIRING.starts_at), True),  # another version or variant
    ],
)
def test_a_new_start_or_fingerprint_is_a_new_alert(alert, expect_new_request):
    status = retrain.record_alert({}, FIRING, NOW_TEXT)
    update = retrain.record_alert(status, alert, NOW_TEXT)
    assert (update is not None) == expect_new_request
    assert update["retrain"]["pending"]["fingerprint"] == alert.fingerprint  # the newer drift request replaces the older
    assert len(update["retrain"]["handledAlerts"]) == 2


def test_a_drift_alert_keeps_a_pending_manual_request():
    status = {"retrain": {"pending": {"trigger": "manual", "reason": "asked", "requestedAt": NOW_TEXT, "force": True}}}
    update = retrain.record_alert(status, FIRING, NOW_TEXT)
    assert update["retrain"]["pending"]["trigger"] == "manual" and update["drift"]["active"]


def test_handled_alerts_stay_bounded():
    status: dict = {}
    for index in range(HANDLED_ALERTS_LIMIT + 5):
        status.update(retrain.record_alert(status, retrain.DriftAlert(True, f"f{index}", NOW_TEXT), NOW_TEXT))
    handled = status["retrain"]["handledAlerts"]
    assert len(handled) == HANDLED_ALERTS_LIMIT and handled[-1] == f"f{HANDLED_ALERTS_LIMIT + 4}@{NOW_TEXT}"


def test_a_quality_alert_records_a_quality_request_and_leaves_drift_alone():
    drift = {"active": False, "since": "2026-11-20T00:00:00Z", "resolvedAt": "2026-11-20T01:00:00Z"}
    update = retrain.record_alert({"drift": drift}, QUALITY, NOW_TEXT)
    assert "drift" not in update
    pending = update["retrain"]["pending"]
    assert (pending["trigger"], pending["fingerprint"], pending["startsAt"]) == ("quality", "q1", QUALITY.starts_at)
    assert "ModelshipQualityDrop on version 3" in pending["reason"] and "0.93" in pending["reason"]
    assert update["retrain"]["handledAlerts"] == ["q1@2026-11-22T07:55:00Z"]
    ModelDeploymentStatus.model_validate(update)
    # Dedupe like drift: the same fingerprint@startsAt again changes nothing, even after it was taken.
    status = {"drift": drift, **update}
    assert retrain.record_alert(status, QUALITY, NOW_TEXT) is None
    status["retrain"]["pending"] = None
    assert retrain.record_alert(status, QUALITY, "2026-11-22T08:30:00Z") is None


@pytest.mark.parametrize(
    ("pending", "first", "second", "expected_trigger"),
    [
        (None, FIRING, QUALITY, "quality"),  # the newer alert request replaces the older
        (None, QUALITY, FIRING, "drift"),
        ({"trigger": "manual", "reason": "asked", "requestedAt": NOW_TEXT, "force": True}, QUALITY, None, "manual"),
    ],
    ids=["quality after drift", "drift after quality", "manual kept"],
)
def test_alert_requests_replace_each_other_not_a_manual_one(pending, first, second, expected_trigger):
    status: dict = {"retrain": {"pending": pending}} if pending else {}
    for alert in (first, second):
        if alert is not None:
            status.update(retrain.record_alert(status, alert, NOW_TEXT))
    assert status["retrain"]["pending"]["trigger"] == expected_trigger


def test_a_resolved_quality_alert_changes_nothing():
    resolved = retrain.DriftAlert(False, "q1", QUALITY.starts_at, "2026-11-22T08:10:00Z", trigger=retrain.TRIGGER_QUALITY)
    status = {"drift": {"active": True, "since": QUALITY.starts_at}, **retrain.record_alert({}, QUALITY, NOW_TEXT)}
    assert retrain.record_alert(status, resolved, NOW_TEXT) is None


@pytest.mark.parametrize(
    ("drift", "resolved", "expected"),
    [
        ({"active": True, "since": FIRING.starts_at}, retrain.DriftAlert(False, "f1", FIRING.starts_at, "2026-11-22T08:10:00Z"), {"active": False, "since": FIRING.starts_at, "resolvedAt": "2026-11-22T08:10:00Z"}),
        ({"active": True, "since": "2026-11-22T09:00:00Z"}, retrain.DriftAlert(False, "f1", FIRING.starts_at, "2026-11-22T08:10:00Z"), None),  # an older alert
        ({"active": False, "since": FIRING.starts_at, "resolvedAt": "x"}, retrain.DriftAlert(False, "f1", FIRING.starts_at, "y"), None),  # re-sent
        (None, retrain.DriftAlert(False, "f1", FIRING.starts_at, "y"), None),
    ],
)
def test_resolved_alerts_clear_drift(drift, resolved, expected):
    update = retrain.record_alert({"drift": drift} if drift else {}, resolved, NOW_TEXT)
    assert (update and update["drift"]) == expected


# --- deciding -------------------------------------------------------------------------------

CASES = [
    # (id, context overrides, retrain status, expected outcome, expected reason, pending kept)
    ("starts", {}, {"pending": DRIFT_REQUEST}, retrain.STARTED, "RetrainStarted", False),
    ("disabled", {"retrain_on_drift": False}, {"pending": DRIFT_REQUEST}, retrain.SKIPPED, "RetrainOnDriftDisabled", False),
    ("inside cooldown", {}, {"pending": DRIFT_REQUEST, "lastDriftRetrainAt": at(30)}, retrain.SKIPPED, "Cooldown", False),
    ("after cooldown", {}, {"pending": DRIFT_REQUEST, "lastDriftRetrainAt": at(61)}, retrain.STARTED, "RetrainStarted", False),
    ("training in flight", {"training_in_flight": True}, {"pending": DRIFT_REQUEST}, retrain.DEFERRED, "InFlight", True),
    ("rollout in flight", {"rollout_in_flight": True}, {"pending": DRIFT_REQUEST}, retrain.DEFERRED, "InFlight", True),
    ("global limit", {"retrains_elsewhere": 2}, {"pending": DRIFT_REQUEST}, retrain.DEFERRED, "ConcurrencyLimit", True),
    ("under the limit", {"retrains_elsewhere": 1}, {"pending": DRIFT_REQUEST}, retrain.STARTED, "RetrainStarted", False),
    # A person's request ignores retrainOnDrift and the cooldown, not the in-flight guard.
    ("manual", {"retrain_on_drift": False, "manual_request": "t1"}, {"lastDriftRetrainAt": at(1)}, retrain.STARTED, "RetrainStarted", False),
    ("manual waits", {"manual_request": "t1", "training_in_flight": True}, {}, retrain.DEFERRED, "InFlight", True),
    ("manual already handled", {"manual_request": "t1"}, {"lastManualRequest": "t1"}, None, None, False),
    ("nothing asked", {}, {}, None, None, False),
    # The quality alert: gated by retrainOnQualityDrop, sharing the drift cooldown, dedupe and guards.
    ("quality starts", {"retrain_on_quality_drop": True}, {"pending": QUALITY_REQUEST}, retrain.STARTED, "RetrainStarted", False),
    ("quality disabled", {}, {"pending": QUALITY_REQUEST}, retrain.SKIPPED, "RetrainOnQualityDropDisabled", False),
    ("quality ignores retrainOnDrift", {"retrain_on_drift": False, "retrain_on_quality_drop": True}, {"pending": QUALITY_REQUEST}, retrain.STARTED, "RetrainStarted", False),
    ("drift ignores retrainOnQualityDrop", {"retrain_on_quality_drop": False}, {"pending": DRIFT_REQUEST}, retrain.STARTED, "RetrainStarted", False),
    ("quality inside the shared cooldown", {"retrain_on_quality_drop": True}, {"pending": QUALITY_REQUEST, "lastDriftRetrainAt": at(30)}, retrain.SKIPPED, "Cooldown", False),
    ("quality after cooldown", {"retrain_on_quality_drop": True}, {"pending": QUALITY_REQUEST, "lastDriftRetrainAt": at(61)}, retrain.STARTED, "RetrainStarted", False),
    ("quality in flight", {"retrain_on_quality_drop": True, "training_in_flight": True}, {"pending": QUALITY_REQUEST}, retrain.DEFERRED, "InFlight", True),
    ("quality global limit", {"retrain_on_quality_drop": True, "retrains_elsewhere": 2}, {"pending": QUALITY_REQUEST}, retrain.DEFERRED, "ConcurrencyLimit", True),
]


@pytest.mark.parametrize(("overrides", "status", "outcome", "reason", "kept"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(overrides, status, outcome, reason, kept):
    ctx = retrain.Context(**{"retrain_on_drift": True, "cooldown_seconds": 3600, **overrides})
    decision = retrain.decide(ctx, {"retrain": status}, NOW)
    last = decision.retrain.get("lastDecision") or {}
    assert (last.get("outcome"), last.get("reason")) == (outcome, reason)
    assert bool(decision.retrain.get("pending")) == kept
    assert (decision.start is not None) == (outcome == retrain.STARTED)
    if outcome == retrain.STARTED:
        assert decision.attempt == 1 and decision.retrain["attempts"] == 1
        assert [n.reason for n in decision.notices] == ["RetrainStarted"]
        # Both alerts start the shared cooldown; manual and schedule retrainings do not.
        started_by_alert = decision.start["trigger"] in ("drift", "quality")
        assert (decision.retrain.get("lastDriftRetrainAt") == NOW_TEXT) == started_by_alert
    if outcome is not None:
        assert last["trigger"] == (status.get("pending") or {}).get("trigger", "manual")
        assert all(last["trigger"] in n.message for n in decision.notices) or outcome == retrain.SKIPPED
    if outcome == retrain.SKIPPED:
        assert [n.reason for n in decision.notices] == ["RetrainSkipped"] and last["message"] in decision.notices[0].message
    if reason == "RetrainOnQualityDropDisabled":
        assert "retrainOnQualityDrop is false" in last["message"]
    if reason == "Cooldown":
        assert "cooldown" in last["message"] and "until 2026-11-22T08:30:00Z" in last["message"]
    ModelDeploymentStatus.model_validate({"retrain": decision.retrain})


def test_a_deferred_request_tells_once_and_starts_when_the_flight_lands():
    ctx = retrain.Context(retrain_on_drift=True, cooldown_seconds=3600, training_in_flight=True)
    first = retrain.decide(ctx, {"retrain": {"pending": DRIFT_REQUEST}}, NOW)
    again = retrain.decide(ctx, {"retrain": first.retrain}, NOW + dt.timedelta(seconds=30))
    assert [n.reason for n in first.notices] == ["RetrainDeferred"] and again.notices == []
    landed = retrain.decide(retrain.Context(retrain_on_drift=True, cooldown_seconds=3600), {"retrain": again.retrain}, NOW + dt.timedelta(minutes=5))
    assert landed.start["fingerprint"] == "f1" and landed.retrain["pending"] is None


def test_the_concurrency_limit_looks_again_soon():
    decision = retrain.decide(retrain.Context(True, 3600, retrains_elsewhere=5, max_concurrent=5), {"retrain": {"pending": DRIFT_REQUEST}}, NOW)
    assert decision.requeue_after == retrain.LIMIT_RECHECK_SECONDS


# --- the schedule -------------------------------------------------------------------------


def test_a_schedule_fires_once_per_slot_and_says_the_next_run():
    ctx = retrain.Context(False, 3600, schedule="*/5 * * * *")
    first = retrain.decide(ctx, {}, NOW + dt.timedelta(seconds=10))
    assert first.start is None and first.retrain["nextScheduledAt"] == "2026-11-22T08:05:00Z"
    assert first.requeue_after == pytest.approx(290)
    due = retrain.decide(ctx, {"retrain": first.retrain}, NOW + dt.timedelta(minutes=5, seconds=2))
    assert due.start["trigger"] == "schedule" and due.start["startsAt"] == "2026-11-22T08:05:00Z"
    assert due.retrain["lastScheduleSlot"] == "2026-11-22T08:05:00Z" and due.retrain["nextScheduledAt"] == "2026-11-22T08:10:00Z"
    # The same status read again (a restart before anything else was written) fires nothing new.
    again = retrain.decide(ctx, {"retrain": due.retrain}, NOW + dt.timedelta(minutes=5, seconds=30))
    assert again.start is None and again.retrain.get("pending") is None


def test_a_slot_due_while_training_waits_as_the_one_pending_request():
    status = {"retrain": {"nextScheduledAt": "2026-11-22T07:55:00Z"}}
    busy = retrain.decide(retrain.Context(False, 3600, schedule="*/5 * * * *", training_in_flight=True), status, NOW)
    assert busy.retrain["pending"]["trigger"] == "schedule" and busy.start is None
    assert busy.retrain["pending"]["startsAt"] == "2026-11-22T08:00:00Z"  # the latest slot due, not the first missed
    # Missed slots while it waited do not pile up: one request, the latest slot recorded.
    later = retrain.decide(retrain.Context(False, 3600, schedule="*/5 * * * *", training_in_flight=True), {"retrain": busy.retrain}, NOW + dt.timedelta(minutes=12))
    assert later.retrain["pending"]["startsAt"] == "2026-11-22T08:00:00Z" and later.retrain["lastScheduleSlot"] == "2026-11-22T08:10:00Z"


def test_removing_the_schedule_forgets_the_next_run():
    decision = retrain.decide(retrain.Context(False, 3600), {"retrain": {"nextScheduledAt": "2026-11-22T08:05:00Z"}}, NOW)
    assert "nextScheduledAt" not in decision.retrain


# --- conditions and in-flight helpers -----------------------------------------------------


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        (None, (False, "NoDriftAlert")),
        ({"active": True, "since": "t0", "features": "a=0.5", "version": "3"}, (True, "DriftAlertFiring")),
        ({"active": False, "since": "t0", "resolvedAt": "t1"}, (False, "DriftResolved")),
    ],
)
def test_drift_condition(drift, expected):
    status, reason, message = retrain.drift_condition(drift)
    assert (status, reason) == expected
    if status:
        assert "a=0.5" in message and "since t0" in message and "version 3" in message


@pytest.mark.parametrize(
    ("status", "last", "expected"),
    [
        ({"championVersion": "1"}, {"finishedAt": "t", "modelVersion": "1", "gate": {"passed": True}}, False),
        ({"championVersion": "1"}, {"finishedAt": "t", "modelVersion": "2", "gate": {"passed": True}}, True),
        ({"championVersion": "1"}, {"finishedAt": "t", "modelVersion": "2", "gate": {"passed": False}}, False),
        ({"championVersion": "1", "canaryVersion": "2"}, {}, True),
        ({"championVersion": "1", "rollout": {"candidate": "2"}}, {}, True),
        ({"championVersion": "1", "rollout": {"candidate": "2", "phase": "Progressing"}}, {}, True),
        ({"championVersion": "1", "rollout": {"candidate": "2", "phase": "AwaitingApproval"}}, {}, True),
        # status.rollout keeps its last candidate after the rollout ended: no longer in flight.
        ({"championVersion": "2", "rollout": {"candidate": "2", "phase": "Promoted"}}, {"finishedAt": "t", "modelVersion": "2", "gate": {"passed": True}}, False),
        ({"championVersion": "1", "rollout": {"candidate": "2", "phase": "RolledBack"}}, {"finishedAt": "t", "modelVersion": "2", "gate": {"passed": True}}, False),
        # A newer version than the rolled-back one is about to roll out.
        ({"championVersion": "1", "rollout": {"candidate": "2", "phase": "RolledBack"}}, {"finishedAt": "t", "modelVersion": "3", "gate": {"passed": True}}, True),
    ],
)
def test_rollout_in_flight(status, last, expected):
    assert retrain.rollout_in_flight(status, last) is expected


# --- through reconcile.plan -----------------------------------------------------------------


def serving_resource(**monitoring) -> ModelDeployment:
    raw = base_resource()
    raw["metadata"].update(uid="u1", generation=1)
    raw["spec"]["monitoring"] = {"retrainOnDrift": True, "cooldown": "1h", **monitoring}
    return ModelDeployment.model_validate(raw)


def serving_status(resource: ModelDeployment, **extra) -> dict:
    spec_hash = builders.training_hash(resource)
    last = {"job": builders.training_job_name(resource.metadata.name, spec_hash), "specHash": spec_hash, "generation": 1, "startedAt": at(60), "finishedAt": at(55), "modelVersion": "1", "gate": {"passed": True, "reason": ""}, "trigger": "spec"}
    return {"championVersion": "1", "lastTraining": last, "phase": "Serving", **extra}


def test_plan_starts_a_drift_job_apart_from_the_spec_job():
    resource = serving_resource()
    status = serving_status(resource, **retrain.record_alert({}, FIRING, NOW_TEXT))
    observed = Observed(serving={"1": ServingState("1", True, "champion")})
    result = plan(resource, status, observed, OperatorConfig(), NOW)
    jobs = [o for o in result.create if o["kind"] == "Job"]
    assert len(jobs) == 1
    job = jobs[0]
    spec_job = builders.training_job_name(resource.metadata.name, builders.training_hash(resource))
    assert job["metadata"]["name"] != spec_job and len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["annotations"]["modelship.io/trigger"] == "drift"
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELSHIP_TRIGGER"] == "drift" and "median_income=0.812" in env["MODELSHIP_RETRAIN_REASON"] and "MODELSHIP_FORCE" not in env
    assert result.status["lastTraining"]["trigger"] == "drift" and result.status["lastTraining"]["job"] == job["metadata"]["name"]
    assert result.status["phase"] == "Training"
    assert result.status["retrain"]["lastDriftRetrainAt"] == NOW_TEXT and "pending" not in {k for k, v in result.status["retrain"].items() if v}
    drift = condition(result.status["conditions"], "DriftDetected")
    assert drift["status"] == "True" and "median_income=0.812" in drift["message"]
    assert "RetrainStarted" in [e.reason for e in result.events]
    # People hear of it: the champion it may replace, the trigger and the Job.
    assert [(m.kind, m.version, dict(m.details)) for m in result.milestones] == [("RetrainStarted", "1", {"trigger": "drift", "training_job": job["metadata"]["name"]})]
    ModelDeploymentStatus.model_validate(result.status)

    # The next reconcile sees the Job running: nothing new, and the spec Job is not wanted.
    observed.jobs[job["metadata"]["name"]] = JobState(job["metadata"]["name"])
    again = plan(resource, result.status, observed, OperatorConfig(), NOW)
    assert [o for o in again.create if o["kind"] == "Job"] == [] and again.delete == []
    assert again.status["phase"] == "Training" and again.milestones == []


def test_plan_recreates_a_lost_retraining_job_under_its_own_name():
    resource = serving_resource()
    first = plan(resource, serving_status(resource, **retrain.record_alert({}, FIRING, NOW_TEXT)), Observed(serving={"1": ServingState("1", True)}), OperatorConfig(), NOW)
    name = first.status["lastTraining"]["job"]
    lost = plan(resource, first.status, Observed(jobs={}, serving={"1": ServingState("1", True)}), OperatorConfig(), NOW)
    assert [o["metadata"]["name"] for o in lost.create if o["kind"] == "Job"] == [name] and lost.milestones == []  # not a new retraining


def test_plan_without_retrain_on_drift_skips_with_an_event():
    resource = serving_resource(retrainOnDrift=False)
    result = plan(resource, serving_status(resource, **retrain.record_alert({}, FIRING, NOW_TEXT)), Observed(serving={"1": ServingState("1", True)}), OperatorConfig(), NOW)
    assert [o for o in result.create if o["kind"] == "Job"] == []
    assert [e.reason for e in result.events if e.reason.startswith("Retrain")] == ["RetrainSkipped"]
    assert condition(result.status["conditions"], "DriftDetected")["status"] == "True" and result.milestones == []


def test_plan_starts_a_quality_job_without_touching_drift():
    resource = serving_resource(retrainOnDrift=False, feedback={"enabled": True, "retrainOnQualityDrop": True, "qualityThreshold": {"metric": "mae", "threshold": 0.8}})
    result = plan(resource, serving_status(resource, **retrain.record_alert({}, QUALITY, NOW_TEXT)), Observed(serving={"1": ServingState("1", True)}), OperatorConfig(), NOW)
    jobs = [o for o in result.create if o["kind"] == "Job"]
    assert len(jobs) == 1 and jobs[0]["metadata"]["annotations"]["modelship.io/trigger"] == "quality"
    env = {e["name"]: e.get("value") for e in jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELSHIP_TRIGGER"] == "quality" and "ModelshipQualityDrop" in env["MODELSHIP_RETRAIN_REASON"] and "MODELSHIP_FORCE" not in env
    assert result.status["lastTraining"]["trigger"] == "quality" and result.status["retrain"]["lastDriftRetrainAt"] == NOW_TEXT
    assert condition(result.status["conditions"], "DriftDetected")["status"] == "False" and "drift" not in result.status
    assert [e.message for e in result.events if e.reason == "RetrainStarted"][0].startswith("quality retraining started")
    ModelDeploymentStatus.model_validate(result.status)


def test_plan_without_retrain_on_quality_drop_skips_with_an_event():
    resource = serving_resource(feedback={"enabled": True})
    result = plan(resource, serving_status(resource, **retrain.record_alert({}, QUALITY, NOW_TEXT)), Observed(serving={"1": ServingState("1", True)}), OperatorConfig(), NOW)
    assert [o for o in result.create if o["kind"] == "Job"] == []
    skipped = [e for e in result.events if e.reason == "RetrainSkipped"]
    assert len(skipped) == 1 and "retrainOnQualityDrop is false" in skipped[0].message
    assert condition(result.status["conditions"], "DriftDetected")["status"] == "False"


def test_retraining_job_names_fit_a_label_value():
    name = "a" * 45
    for attempt in (1, 9, 10, 999):
        job = builders.training_job_name(name, "0123456789", attempt)
        assert len(job) <= 63 and job.endswith(f"-{attempt}")
    assert len({builders.training_job_name(name, "0123456789", a) for a in range(12)}) == 12


def test_cron_parsing_errors_name_the_field():
    with pytest.raises(cron.CronError, match="hour: 24 is outside 0-23"):
        cron.parse("0 24 * * *")
    assert cron.parse("0 3 * * 1").next_after(NOW) == dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.timezone.utc)
    # Day of month OR day of week when both are restricted (cron's rule).
    assert cron.parse("0 0 1 * 1").next_after(NOW) == dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("rollout", "model_version"),
    [
        ({"candidate": "1", "phase": "Promoted"}, "1"),
        ({"candidate": "2", "phase": "RolledBack", "message": "p95 latency over its threshold"}, "2"),
    ],
    ids=["after a promotion", "after a rollback"],
)
def test_plan_retrains_once_the_last_rollout_is_over(rollout, model_version):
    # status.rollout keeps the last candidate when its rollout ended; that is not "in flight".
    resource = serving_resource()
    status = serving_status(resource, rollout=rollout, **retrain.record_alert({}, FIRING, NOW_TEXT))
    status["lastTraining"]["modelVersion"] = model_version
    result = plan(resource, status, Observed(serving={"1": ServingState("1", True, "champion")}), OperatorConfig(), NOW)
    jobs = [o for o in result.create if o["kind"] == "Job"]
    assert [job["metadata"]["annotations"]["modelship.io/trigger"] for job in jobs] == ["drift"]
    ModelDeploymentStatus.model_validate(result.status)


@pytest.mark.parametrize(("asked", "expected"), [([], None), ([None], None), ([30.0], 30.0), ([300.0, 12.5], 12.5), ([12.5, None, 300.0], 12.5)])
def test_plan_looks_again_at_the_earliest_of_its_parts(asked, expected):
    from modelship.operator.reconcile import Plan

    result = Plan()
    for seconds in asked:
        result.look_again_in(seconds)
    assert result.requeue_after == expected
