"""Retraining on drift, on a schedule and on demand: pure decisions over plain data.

Two halves, both without I/O or clock:

- :func:`record_alert` turns one ModelshipDataDrift or ModelshipQualityDrop alert (as
  Alertmanager's webhook delivers it) into the new ``status.retrain`` of its ModelDeployment
  (and, for drift only, ``status.drift``). The webhook writes that before it answers, so an
  operator restart loses no request; a re-sent alert (same fingerprint and start) changes
  nothing.
- :func:`decide` runs in every reconcile: it turns the annotation of ``modelship retrain``, the
  schedule and the pending request into at most one training to start now, and says why
  otherwise (retrainOnDrift / retrainOnQualityDrop off, the cooldown both alerts share, a
  training or rollout in flight, the operator's limit of concurrent retrainings).

Dropping a request (disabled, cooldown) writes an Event once; a deferred request stays pending
(only one is kept: a newer alert request replaces an older one, a manual one replaces any).
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from modelship.api import cron, parse_duration
from modelship.api.names import RETRAIN_ANNOTATION
from modelship.api.v1alpha1 import HANDLED_ALERTS_LIMIT, ModelDeployment, RolloutPhase
from modelship.operator import builders
from modelship.operator.config import OperatorConfig
from modelship.operator.events import Event

TRIGGER_SPEC = "spec"
TRIGGER_DRIFT = "drift"
#: The ModelshipQualityDrop alert: live quality from ground-truth feedback crossed its threshold.
TRIGGER_QUALITY = "quality"
TRIGGER_SCHEDULE = "schedule"
TRIGGER_MANUAL = "manual"
#: Triggers of a retraining (a training not caused by a spec change).
RETRAIN_TRIGGERS = (TRIGGER_DRIFT, TRIGGER_QUALITY, TRIGGER_SCHEDULE, TRIGGER_MANUAL)
#: Triggers of the alerts: they share one cooldown (``spec.monitoring.cooldown``).
ALERT_TRIGGERS = (TRIGGER_DRIFT, TRIGGER_QUALITY)

STARTED = "Started"
SKIPPED = "Skipped"
DEFERRED = "Deferred"

#: How soon a request deferred by the concurrency limit is looked at again, in seconds.
LIMIT_RECHECK_SECONDS = 30.0


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- the webhook side -----------------------------------------------------------------


@dataclass(frozen=True)
class DriftAlert:
    """The part of one Alertmanager alert the drift loop reads (a drift or a quality alert)."""

    firing: bool
    fingerprint: str
    starts_at: str
    ends_at: str | None = None
    version: str | None = None
    #: ``feature=score, ...`` from the alert's drifted_features annotation.
    features: str = ""
    #: TRIGGER_DRIFT (ModelshipDataDrift) or TRIGGER_QUALITY (ModelshipQualityDrop).
    trigger: str = TRIGGER_DRIFT
    #: What a quality alert measured (its summary annotation), for the request's reason.
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.fingerprint}@{self.starts_at}"


def record_alert(status: dict[str, Any], alert: DriftAlert, now: str) -> dict[str, Any] | None:
    """The ``drift`` and ``retrain`` status blocks after ``alert``; None when it changes nothing.
    A quality alert writes only ``retrain``: it says nothing about drifted inputs, and its
    resolving asks for nothing."""
    quality = alert.trigger == TRIGGER_QUALITY
    drift = status.get("drift") or {}
    retrain = copy.deepcopy(status.get("retrain") or {})
    if not alert.firing:
        if quality or not drift.get("active") or (drift.get("since") and drift.get("since") != alert.starts_at):
            return None  # an older alert resolving, or one already recorded as resolved
        return {"drift": {**drift, "active": False, "resolvedAt": alert.ends_at or now}}
    handled = list(retrain.get("handledAlerts") or [])
    if alert.key in handled:
        return None
    pending = retrain.get("pending")
    if not pending or pending.get("trigger") in ALERT_TRIGGERS:
        where = f" on version {alert.version}" if alert.version else ""
        what = f"ModelshipQualityDrop{where}: {alert.detail or 'live quality past its threshold'}" if quality else f"ModelshipDataDrift{where}: {alert.features or 'drifted features not reported'}"
        retrain["pending"] = {
            "trigger": alert.trigger,
            "reason": what,
            "fingerprint": alert.fingerprint,
            "startsAt": alert.starts_at,
            "requestedAt": now,
            "force": False,
        }
    retrain["handledAlerts"] = (handled + [alert.key])[-HANDLED_ALERTS_LIMIT:]
    if quality:
        return {"retrain": retrain}
    return {"drift": {"active": True, "features": alert.features, "since": alert.starts_at, "version": alert.version}, "retrain": retrain}


# --- the reconcile side ---------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What :func:`decide` needs beyond the status."""

    retrain_on_drift: bool
    cooldown_seconds: float
    retrain_on_quality_drop: bool = False
    schedule: str | None = None
    #: Value of the modelship.io/retrain annotation (``modelship retrain NAME`` sets it).
    manual_request: str | None = None
    training_in_flight: bool = False
    rollout_in_flight: bool = False
    #: Retraining Jobs running for other ModelDeployments of this operator.
    retrains_elsewhere: int = 0
    max_concurrent: int = 2


@dataclass
class Decision:
    #: The request to start a training for now (wire form of RetrainRequest), or None.
    start: dict[str, Any] | None
    #: The new ``status.retrain``.
    retrain: dict[str, Any]
    #: Job number of the training to start (names it apart from the spec's Job).
    attempt: int = 0
    #: DriftDetected as (status, reason, message).
    drift_condition: tuple[bool, str, str] = (False, "NoDriftAlert", "no drift alert received")
    notices: list[Event] = field(default_factory=list)
    #: Seconds until the next look (the next schedule slot, a deferred request).
    requeue_after: float | None = None


def retraining(last_training: dict[str, Any]) -> bool:
    """The latest training is a retraining that has not finished (it counts toward the limit)."""
    return last_training.get("trigger") in RETRAIN_TRIGGERS and not last_training.get("finishedAt")


#: Phases of ``status.rollout`` that are over: its ``candidate`` stays as the last one rolled out.
_ROLLOUT_OVER = (RolloutPhase.promoted.value, RolloutPhase.rolled_back.value)


def rollout_in_flight(status: dict[str, Any], last_training: dict[str, Any]) -> bool:
    """A trained version is on its way to champion (deploying, canary, A/B test)."""
    state = status.get("rollout") or {}
    if status.get("canaryVersion") or (state.get("candidate") and state.get("phase") not in _ROLLOUT_OVER):
        return True
    gate = last_training.get("gate") or {}
    version = last_training.get("modelVersion")
    if version and state.get("candidate") == version and state.get("phase") == RolloutPhase.rolled_back.value:
        return False  # rolled back: it will not roll out again
    return bool(last_training.get("finishedAt") and gate.get("passed") and version and version != status.get("championVersion"))


def drift_condition(drift: dict[str, Any] | None) -> tuple[bool, str, str]:
    if not drift:
        return False, "NoDriftAlert", "no drift alert received"
    version = f" of version {drift['version']}" if drift.get("version") else ""
    if drift.get("active"):
        features = drift.get("features") or "drifted features not reported"
        return True, "DriftAlertFiring", f"inputs{version} drifted since {drift.get('since')}: {features}"
    return False, "DriftResolved", f"the drift alert{version} resolved at {drift.get('resolvedAt')}"


def _schedule(ctx: Context, retrain: dict[str, Any], now: dt.datetime) -> tuple[dict[str, Any] | None, float | None, Event | None]:
    """A schedule request when a slot is due; records the slot so it fires once, even across restarts."""
    if not ctx.schedule:
        retrain.pop("nextScheduledAt", None)
        return None, None, None
    try:
        schedule = cron.parse(ctx.schedule)
    except cron.CronError as error:  # the API validates it; an old object may still hold a bad one
        return None, None, Event("Warning", "InvalidSchedule", f"spec.training.schedule: {error}")
    due = parse_time(retrain.get("nextScheduledAt"))
    request = None
    if due is None:
        due = schedule.next_after(now)
    elif now >= due:
        # Slots missed while the operator was away make one request, for the latest of them.
        for _ in range(10000):
            following = schedule.next_after(due)
            if following > now:
                break
            due = following
        slot = format_time(due)
        if slot != retrain.get("lastScheduleSlot"):
            request = {"trigger": TRIGGER_SCHEDULE, "reason": f"schedule {ctx.schedule!r}, slot {slot}", "startsAt": slot, "requestedAt": format_time(now), "force": False}
            retrain["lastScheduleSlot"] = slot
        due = schedule.next_after(now)
    retrain["nextScheduledAt"] = format_time(due)
    return request, max((due - now).total_seconds(), 1.0), None


def _record(retrain: dict[str, Any], request: dict[str, Any], outcome: str, reason: str, message: str, now: str) -> None:
    retrain["lastDecision"] = {"trigger": request["trigger"], "outcome": outcome, "reason": reason, "message": message, "at": now}


def decide(ctx: Context, status: dict[str, Any], now: dt.datetime) -> Decision:
    """At most one retraining to start now, and the new ``status.retrain``."""
    retrain = copy.deepcopy(status.get("retrain") or {})
    now_text = format_time(now)
    decision = Decision(start=None, retrain=retrain, drift_condition=drift_condition(status.get("drift")))

    # Requests of this reconcile: a person's first (it replaces any pending one), then the schedule.
    if ctx.manual_request and ctx.manual_request != retrain.get("lastManualRequest"):
        retrain["lastManualRequest"] = ctx.manual_request
        retrain["pending"] = {"trigger": TRIGGER_MANUAL, "reason": f"requested with modelship retrain ({ctx.manual_request})", "requestedAt": now_text, "force": True}
    scheduled, decision.requeue_after, notice = _schedule(ctx, retrain, now)
    if notice:
        decision.notices.append(notice)
    if scheduled and not retrain.get("pending"):
        retrain["pending"] = scheduled

    pending = retrain.get("pending")
    if not pending:
        return decision
    trigger = pending.get("trigger", TRIGGER_DRIFT)

    if trigger == TRIGGER_DRIFT and not ctx.retrain_on_drift:
        message = f"not retraining on {pending.get('reason')}: spec.monitoring.retrainOnDrift is false"
        return _drop(decision, pending, "RetrainOnDriftDisabled", message, now_text)
    if trigger == TRIGGER_QUALITY and not ctx.retrain_on_quality_drop:
        message = f"not retraining on {pending.get('reason')}: spec.monitoring.feedback.retrainOnQualityDrop is false"
        return _drop(decision, pending, "RetrainOnQualityDropDisabled", message, now_text)
    if trigger in ALERT_TRIGGERS:
        # One cooldown for both alerts: a quality drop right after a drift retraining (or the
        # other way round) is most likely the same change in the data.
        last = parse_time(retrain.get("lastDriftRetrainAt"))
        if last is not None and (now - last).total_seconds() < ctx.cooldown_seconds:
            until = format_time(last + dt.timedelta(seconds=ctx.cooldown_seconds))
            message = f"not retraining on {pending.get('reason')}: inside the cooldown after the alert retraining of {format_time(last)} (until {until})"
            return _drop(decision, pending, "Cooldown", message, now_text)

    if ctx.training_in_flight or ctx.rollout_in_flight:
        what = "a training" if ctx.training_in_flight else "a rollout"
        return _defer(decision, pending, "InFlight", f"{trigger} retraining waits: {what} is in flight", now_text, None)
    if ctx.retrains_elsewhere >= ctx.max_concurrent:
        message = f"{trigger} retraining waits: {ctx.retrains_elsewhere} retrainings run, the operator's limit is {ctx.max_concurrent}"
        return _defer(decision, pending, "ConcurrencyLimit", message, now_text, LIMIT_RECHECK_SECONDS)

    retrain["pending"] = None
    retrain["attempts"] = int(retrain.get("attempts") or 0) + 1
    if trigger in ALERT_TRIGGERS:
        retrain["lastDriftRetrainAt"] = now_text
    message = f"{trigger} retraining started: {pending.get('reason')}"
    _record(retrain, pending, STARTED, "RetrainStarted", message, now_text)
    decision.start = pending
    decision.attempt = retrain["attempts"]
    decision.notices.append(Event("Normal", "RetrainStarted", message))
    return decision


def _drop(decision: Decision, pending: dict[str, Any], reason: str, message: str, now: str) -> Decision:
    decision.retrain["pending"] = None
    _record(decision.retrain, pending, SKIPPED, reason, message, now)
    decision.notices.append(Event("Normal", "RetrainSkipped", message))
    return decision


def _defer(decision: Decision, pending: dict[str, Any], reason: str, message: str, now: str, recheck: float | None) -> Decision:
    previous = decision.retrain.get("lastDecision") or {}
    if previous.get("outcome") != DEFERRED or previous.get("reason") != reason or previous.get("trigger") != pending.get("trigger"):
        _record(decision.retrain, pending, DEFERRED, reason, message, now)
        decision.notices.append(Event("Normal", "RetrainDeferred", message))
    if recheck is not None:
        decision.requeue_after = min(recheck, decision.requeue_after or recheck)
    return decision


# --- glue for reconcile.plan --------------------------------------------------------------


def context(resource: ModelDeployment, status: dict[str, Any], last_training: dict[str, Any], training_running: bool, retrains_elsewhere: int, config: OperatorConfig) -> Context:
    monitoring = resource.spec.monitoring
    return Context(
        retrain_on_drift=monitoring.retrain_on_drift,
        retrain_on_quality_drop=monitoring.feedback.retrain_on_quality_drop,
        cooldown_seconds=parse_duration(monitoring.cooldown),
        schedule=resource.spec.training.schedule,
        manual_request=(resource.metadata.annotations or {}).get(RETRAIN_ANNOTATION),
        training_in_flight=training_running,
        rollout_in_flight=rollout_in_flight(status, last_training),
        retrains_elsewhere=retrains_elsewhere,
        max_concurrent=config.max_concurrent_retrains,
    )


def rebuild_job(resource: ModelDeployment, config: OperatorConfig, spec_hash: str, last_training: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """The Job ``last_training`` records, built again after it vanished (a retraining keeps its
    trigger and number; its reason and force flag are not kept)."""
    trigger = last_training.get("trigger") or TRIGGER_SPEC
    if trigger not in RETRAIN_TRIGGERS:
        return builders.training_job(resource, config, spec_hash)
    return builders.training_job(resource, config, spec_hash, trigger, int((status.get("retrain") or {}).get("attempts") or 0))
