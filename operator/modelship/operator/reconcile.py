"""The reconcile decision: given a ModelDeployment and what exists, what should change.

``plan`` is pure (no API, no MLflow, no Prometheus, no clock): the controller observes,
measures the candidate when an analysis is due, calls it and applies the plan. Level-triggered,
so a restart in the middle of anything reaches the same end state. It has three parts:
:func:`plan_training` (the Job and its outcome), :func:`plan_rollout` (serving objects, traffic,
promotion; the decisions are :mod:`modelship.operator.rollout`'s) and :func:`plan_status`.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from modelship.api import names
from modelship.api.results import TrainingOutcome
from modelship.api.v1alpha1 import ModelDeployment, ModelDeploymentStatus, Phase, RolloutPhase, RolloutStatus
from modelship.monitoring import metrics as metric_names
from modelship.operator import builders, events, retrain, rollout
from modelship.operator.conditions import DEGRADED, DRIFT_DETECTED, PROGRESSING, PROMOTED, READY, TRAINED, condition, set_condition
from modelship.operator.config import OperatorConfig
from modelship.operator.observe import JobState, Observed
from modelship.operator.events import Event, Milestone
from modelship.operator.traffic import TrafficSplit, provider_for, with_standbys

CHAMPION = "champion"
CANARY = "canary"
#: Promoted=False reasons that mean the latest candidate failed (the resource is Degraded).
ROLLOUT_FAILURES = ("AnalysisFailed", "AnalysisInconclusive", "Aborted")


@dataclass
class Plan:
    #: Objects to create when missing and never update (Jobs: their template is immutable).
    create: list[dict[str, Any]] = field(default_factory=list)
    #: Objects to create or bring up to date.
    apply: list[dict[str, Any]] = field(default_factory=list)
    #: (apiVersion, kind, name) of owned objects that should no longer exist.
    delete: list[tuple[str, str, str]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    #: Version whose MLflow alias ``champion`` must point at it before the status says so.
    promote_version: str | None = None
    #: Reason of the training outcome this plan records (a finished Job seen for the first time).
    training_outcome: str | None = None
    #: Seconds until the resource should be looked at again (a pause's end, the next analysis,
    #: a schedule slot, a deferred retrain): the earliest of them.
    requeue_after: float | None = None
    #: Retrainings started, versions promoted or rolled back by this plan: people are notified.
    milestones: list[Milestone] = field(default_factory=list)

    def look_again_in(self, seconds: float | None) -> None:
        if seconds is not None and (self.requeue_after is None or seconds < self.requeue_after):
            self.requeue_after = seconds


class Conditions:
    """The resource's conditions while a plan is made; one transition time for the whole plan."""

    def __init__(self, conditions: list[dict[str, Any]], now: str, generation: int | None) -> None:
        self.items = conditions
        self.now = now
        self.generation = generation

    def set(self, type_: str, value: bool | None, reason: str, message: str) -> None:
        self.items = set_condition(self.items, type_, value, reason, message, self.now, self.generation)

    def get(self, type_: str) -> dict[str, Any]:
        return condition(self.items, type_) or {}


@dataclass(frozen=True)
class TrainingState:
    #: The ``lastTraining`` record after this plan.
    last: dict[str, Any]
    running: bool


def _metric_summary(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))


def _record_outcome(last: dict[str, Any], job: JobState, now: str) -> tuple[bool | None, str, str, Event]:
    """Write a finished Job into ``lastTraining``; returns the Trained condition and the event."""
    last["finishedAt"] = now
    result = job.result
    if result is not None:
        for key, value in (("runId", result.run_id), ("modelVersion", result.version)):
            if value:
                last[key] = value
        last["metrics"] = {k: float(v) for k, v in result.metrics.items()}
    if result is not None and result.outcome == TrainingOutcome.succeeded and result.version:
        last["gate"] = {"passed": True, "reason": result.reason or "quality gate passed"}
        message = f"version {result.version} registered ({_metric_summary(result.metrics)})"
        return True, "TrainingSucceeded", message, Event("Normal", "TrainingSucceeded", message)
    if result is not None and result.outcome == TrainingOutcome.gate_failed:
        last["gate"] = {"passed": False, "reason": result.reason}
        message = f"version {result.version or '?'} failed the quality gate: {result.reason}"
        return False, "QualityGateFailed", message, Event("Warning", "QualityGateFailed", message)
    if result is not None and result.outcome == TrainingOutcome.unchanged:
        message = f"retraining job {job.name} did not train: {result.reason}"
        return True, "DataUnchanged", message, Event("Normal", "RetrainSkipped", message)
    if result is not None and result.outcome == TrainingOutcome.invalid_input:
        message = f"training job {job.name} rejected its input: {result.reason}"
        return False, "InvalidInput", message, Event("Warning", "InvalidInput", message)
    if result is not None:
        message = f"training job {job.name} failed: {result.reason}"
        return False, "TrainingFailed", message, Event("Warning", "TrainingFailed", message)
    if job.succeeded:
        message = f"training job {job.name} completed without reporting a result"
        return False, "ResultMissing", message, Event("Warning", "ResultMissing", message)
    detail = job.failure or "failed"
    if job.message:
        detail += f"; last output: {job.message.strip()[-300:]}"
    message = f"training job {job.name} failed: {detail}"
    return False, "TrainingFailed", message, Event("Warning", "TrainingFailed", message)


def plan(
    resource: ModelDeployment,
    status: dict[str, Any],
    observed: Observed,
    config: OperatorConfig,
    now: dt.datetime,
    sample: rollout.AnalysisSample | None = None,
    variant_samples: dict[str, rollout.AnalysisSample] | None = None,
    quality: rollout.QualitySample | None = None,
) -> Plan:
    """Everything that should change for ``resource``; ``status`` is its current status (wire
    form); ``sample`` is the candidate's analysis when :func:`rollout.analysis_due` said so, and
    ``variant_samples`` each A/B version's when :func:`rollout.ab_analysis_due` did, and
    ``quality`` the A/B variants' live quality then (with feedback on)."""
    result = Plan()
    status = copy.deepcopy(status or {})
    conditions = Conditions(status.get("conditions") or [], rollout.timestamp(now), resource.metadata.generation)
    training = plan_training(resource, status, observed, config, now, result, conditions)
    decision = plan_rollout(resource, status, observed, config, now, sample, training, result, conditions, variant_samples, quality)
    plan_status(resource, status, observed, config, training, decision, result, conditions)
    return result


def plan_training(
    resource: ModelDeployment, status: dict[str, Any], observed: Observed, config: OperatorConfig, now: dt.datetime, result: Plan, conditions: Conditions
) -> TrainingState:
    """The training Job of the current spec, and its outcome once it finished."""
    generation = resource.metadata.generation
    stamp = rollout.timestamp(now)
    spec_hash = builders.training_hash(resource)
    last: dict[str, Any] = dict(status.get("lastTraining") or {})
    training_running = False
    if last.get("specHash") != spec_hash:
        job = builders.training_job(resource, config, spec_hash)
        job_name = job["metadata"]["name"]
        if job_name not in observed.jobs:
            result.create.append(job)
        last = {"job": job_name, "specHash": spec_hash, "generation": generation, "startedAt": stamp, "trigger": "spec"}
        training_running = True
        result.events.append(Event("Normal", "TrainingStarted", f"training job {job_name} started for spec {spec_hash}"))
    elif not last.get("finishedAt"):
        job_state = observed.jobs.get(last["job"])
        if job_state is None:
            # The Job is gone before it reported (deleted by hand, or cleaned up while the
            # operator was away): run it again rather than wait forever.
            result.create.append(retrain.rebuild_job(resource, config, spec_hash, last, status))
            training_running = True
        elif not job_state.finished:
            training_running = True
        else:
            trained, reason, message, event = _record_outcome(last, job_state, stamp)
            result.training_outcome = reason
            conditions.set(TRAINED, trained, reason, message)
            result.events.append(event)
    # --- retraining on drift, schedule or request (modelship.operator.retrain) -------------
    retraining = retrain.decide(retrain.context(resource, status, last, training_running, observed.retrains_elsewhere, config), status, now)
    if retraining.start:
        request = retraining.start
        job = builders.training_job(resource, config, spec_hash, request["trigger"], retraining.attempt, request.get("reason"), bool(request.get("force")))
        result.create.append(job)
        last = {"job": job["metadata"]["name"], "specHash": spec_hash, "generation": generation, "startedAt": stamp, "trigger": request["trigger"]}
        training_running = True
        result.milestones.append(Milestone(events.RETRAIN_STARTED, status.get("championVersion") or "", (
            (metric_names.LABEL_TRIGGER, request["trigger"]), (metric_names.LABEL_TRAINING_JOB, last["job"]),
        )))
    result.events += retraining.notices
    result.look_again_in(retraining.requeue_after)
    status["retrain"] = retraining.retrain or None
    conditions.set(DRIFT_DETECTED, *retraining.drift_condition)

    # Jobs of an older spec that still run are wasted work.
    for job_state in observed.jobs.values():
        if job_state.name != last.get("job") and not job_state.finished:
            result.delete.append(("batch/v1", "Job", job_state.name))
    if training_running:
        conditions.set(PROGRESSING, True, "Training", f"training job {last['job']} is running")
    status["lastTraining"] = last
    return TrainingState(last, training_running)


def _user_requests(resource: ModelDeployment) -> rollout.UserRequests:
    annotations = resource.metadata.annotations or {}
    return rollout.UserRequests(
        approve=annotations.get(names.APPROVE_ANNOTATION),
        abort=annotations.get(names.ABORT_ANNOTATION),
        rollback=annotations.get(names.ROLLBACK_ANNOTATION),
        promote=annotations.get(names.PROMOTE_ANNOTATION),
    )


def rollout_state(status: dict[str, Any]) -> RolloutStatus | None:
    return RolloutStatus.model_validate(status["rollout"]) if status.get("rollout") else None


def candidate_version(status: dict[str, Any], last: dict[str, Any]) -> str | None:
    """The trained version that should roll out: it passed its gate, is not the champion, and was
    not rolled back already."""
    version = last.get("modelVersion") if last.get("finishedAt") and (last.get("gate") or {}).get("passed") else None
    state = rollout_state(status)
    if not version or version == status.get("championVersion"):
        return None
    if state and state.candidate == version and state.phase == RolloutPhase.rolled_back.value:
        return None
    return version


def plan_rollout(
    resource: ModelDeployment,
    status: dict[str, Any],
    observed: Observed,
    config: OperatorConfig,
    now: dt.datetime,
    sample: rollout.AnalysisSample | None,
    training: TrainingState,
    result: Plan,
    conditions: Conditions,
    variant_samples: dict[str, rollout.AnalysisSample] | None = None,
    quality: rollout.QualitySample | None = None,
) -> rollout.RolloutDecision:
    """Serving objects of every version that takes part, the route's split, and promotion."""
    champion = status.get("championVersion")
    candidate = candidate_version(status, training.last)
    candidate_ready = bool(candidate and observed.serving.get(candidate) and observed.serving[candidate].ready)
    decision = rollout.decide(
        resource.spec.rollout,
        rollout_state(status),
        champion,
        candidate,
        candidate_ready,
        now,
        sample,
        _user_requests(resource),
        rollout.Settings(retain_rolled_back=config.retain_rolled_back_seconds),
        frozenset(version for version, state in observed.serving.items() if state.ready),
        variant_samples,
        quality,
    )
    for version, replicas in decision.keep.items():
        existing = observed.serving.get(version)
        variant = serving_variant(version, decision, existing.variant if existing else None)
        result.apply.append(builders.serving_deployment(resource, config, version, variant, replicas=replicas))
        result.apply.append(builders.serving_service(resource, version, variant))
        hpa = builders.serving_hpa(resource, version, variant) if replicas is None else None
        if hpa:
            result.apply.append(hpa)
        elif resource.spec.serving.autoscaling and existing:
            result.delete.append(("autoscaling/v2", "HorizontalPodAutoscaler", builders.serving_name(resource.metadata.name, version)))
    if decision.weights:
        weights = with_standbys(decision.weights, decision.keep)
        result.apply += provider_for(config).routes(resource, config, TrafficSplit(weights=weights, header_routes=decision.header_routes, mirror=decision.mirror))
    for version in observed.serving:
        if version not in decision.keep:
            deployment_name = builders.serving_name(resource.metadata.name, version)
            result.delete += [("apps/v1", "Deployment", deployment_name), ("v1", "Service", deployment_name)]
            if resource.spec.serving.autoscaling:
                result.delete.append(("autoscaling/v2", "HorizontalPodAutoscaler", deployment_name))
    result.promote_version = decision.promote
    result.look_again_in(decision.requeue_after)
    result.events += decision.notices
    if decision.promoted:
        conditions.set(PROMOTED, *decision.promoted)
    result.milestones += rollout_milestones(decision, champion)
    return decision


def rollout_milestones(decision: rollout.RolloutDecision, champion: str | None) -> list[Milestone]:
    """A promotion or a rollback this decision makes (``champion``: the one before it)."""
    if decision.promoted is None:
        return []
    promoted, reason, _ = decision.promoted
    if promoted and decision.promote:
        return [Milestone(events.PROMOTED, decision.promote, ((metric_names.LABEL_PREVIOUS_VERSION, champion or ""),))]
    # `modelship rollback` of a promotion rolls the champion back; a failed rollout its candidate.
    version = champion if reason == "RolledBack" else (decision.rollout.candidate if decision.failure and decision.rollout else None)
    if promoted or not version:
        return []
    return [Milestone(events.ROLLED_BACK, version, ((metric_names.LABEL_REASON, reason), (metric_names.LABEL_CHAMPION_VERSION, decision.champion or "")))]


def serving_variant(version: str, decision: rollout.RolloutDecision, existing: str | None) -> str:
    """The variant a version's pods carry (their label, what the model server answers and its
    metrics say): an A/B arm's name; else the label the version started with (a new label would
    restart its pods on promotion); else ``canary`` for a candidate beside a champion and
    ``champion`` otherwise: the first version of a resource is nobody's canary."""
    return decision.variants.get(version) or existing or (CANARY if version == decision.candidate and decision.champion else CHAMPION)


def plan_status(
    resource: ModelDeployment,
    status: dict[str, Any],
    observed: Observed,
    config: OperatorConfig,
    training: TrainingState,
    decision: rollout.RolloutDecision,
    result: Plan,
    conditions: Conditions,
) -> None:
    """The status the API server keeps, built through :class:`ModelDeploymentStatus`."""
    champion = decision.champion
    candidate = decision.candidate
    state = decision.rollout
    status["championVersion"] = champion
    status["canaryVersion"] = candidate
    status["canaryWeight"] = decision.weights.get(candidate, 0) if candidate else None
    status["traffic"] = [
        {"version": v, "weight": w, "role": CHAMPION if v == champion else CANARY} for v, w in sorted(decision.weights.items())
    ]
    status["modelName"] = resource.registered_model_name
    status["rollout"] = state.to_wire() if state else None

    champion_ready = bool(champion and (decision.promote == champion or (observed.serving.get(champion) and observed.serving[champion].ready)))
    if champion_ready:
        status["endpoint"] = builders.endpoint_url(resource, config)
        conditions.set(READY, True, "ChampionServing", f"version {champion} serves {status['endpoint']}")
    elif champion:
        conditions.set(READY, False, "ChampionNotReady", f"the pods of version {champion} are not ready")
    else:
        conditions.set(READY, False, "NoChampion", "no version serves yet")

    last = training.last
    training_failed = bool(last.get("finishedAt")) and conditions.get(TRAINED).get("status") == "False"
    promoted = conditions.get(PROMOTED)
    rollout_failed = bool(
        state and state.phase == RolloutPhase.rolled_back.value and promoted.get("status") == "False" and promoted.get("reason") in ROLLOUT_FAILURES
    )
    if champion:
        if training_failed and not training.running:
            conditions.set(DEGRADED, True, conditions.get(TRAINED).get("reason", "TrainingFailed"), f"still serving version {champion}; the latest training failed")
        elif rollout_failed and not training.running:
            conditions.set(DEGRADED, True, promoted["reason"], f"still serving version {champion}; {promoted.get('message', '')}")
        else:
            conditions.set(DEGRADED, False, "AsExpected", "")

    rollout_phase = state.phase if state and candidate else None
    if not training.running:
        if rollout_phase == RolloutPhase.waiting.value:
            conditions.set(PROGRESSING, True, "Deploying", f"waiting for the pods of version {candidate}")
        elif rollout_phase == RolloutPhase.progressing.value:
            conditions.set(PROGRESSING, True, "Canary", state.message or "")
        elif rollout_phase == RolloutPhase.awaiting_approval.value:
            conditions.set(PROGRESSING, True, "AwaitingApproval", state.message or "")
        elif rollout_phase == RolloutPhase.ab_testing.value:
            conditions.set(PROGRESSING, True, "ABTesting", state.message or "")
        else:
            conditions.set(PROGRESSING, False, "Idle", "nothing in flight")

    if training.running:
        phase = Phase.training
    elif rollout_phase == RolloutPhase.waiting.value:
        phase = Phase.deploying
    elif rollout_phase in (RolloutPhase.progressing.value, RolloutPhase.ab_testing.value):
        phase = Phase.progressing
    elif rollout_phase == RolloutPhase.awaiting_approval.value:
        phase = Phase.awaiting_approval
    elif champion:
        phase = Phase.degraded if training_failed or rollout_failed else Phase.serving
    elif training_failed:
        phase = Phase.failed
    else:
        phase = Phase.pending
    status["phase"] = phase.value
    status["conditions"] = conditions.items
    status["observedGeneration"] = resource.metadata.generation
    # Through the typed model: a field the CRD does not declare would be dropped by the API server.
    result.status = ModelDeploymentStatus.model_validate({k: v for k, v in status.items() if v is not None}).to_wire()
