"""The reconcile decision: given a ModelDeployment and what exists, what should change.

``plan`` is pure (no API, no MLflow, no clock): the handler observes, calls it, applies the
plan. Level-triggered, so a restart in the middle of anything reaches the same end state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from modelship.api.results import TrainingOutcome
from modelship.api.v1alpha1 import ModelDeployment, Phase
from modelship.operator import builders, retrain
from modelship.operator.conditions import DEGRADED, DRIFT_DETECTED, PROGRESSING, PROMOTED, READY, TRAINED, condition, set_condition
from modelship.operator.config import OperatorConfig
from modelship.operator.observe import JobState, Observed
from modelship.operator.rollout import decide_traffic

CHAMPION = "champion"


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


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
    #: Seconds until this resource should be looked at again (a schedule slot, a deferred retrain).
    requeue_after: float | None = None


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


def plan(resource: ModelDeployment, status: dict[str, Any], observed: Observed, config: OperatorConfig, now: str) -> Plan:
    """Everything that should change for ``resource``; ``status`` is its current status (wire form)."""
    result = Plan()
    status = copy.deepcopy(status or {})
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    generation = resource.metadata.generation
    name = resource.metadata.name

    def set_(type_: str, value: bool | None, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, value, reason, message, now, generation)

    # --- training ---------------------------------------------------------------------
    spec_hash = builders.training_hash(resource)
    last: dict[str, Any] = dict(status.get("lastTraining") or {})
    training_running = False
    if last.get("specHash") != spec_hash:
        job = builders.training_job(resource, config, spec_hash)
        job_name = job["metadata"]["name"]
        if job_name not in observed.jobs:
            result.create.append(job)
        last = {"job": job_name, "specHash": spec_hash, "generation": generation, "startedAt": now, "trigger": "spec"}
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
            trained, reason, message, event = _record_outcome(last, job_state, now)
            result.training_outcome = reason
            set_(TRAINED, trained, reason, message)
            result.events.append(event)
    # --- retraining on drift, schedule or request (modelship.operator.retrain) -------------
    retraining = retrain.decide(retrain.context(resource, status, last, training_running, observed.retrains_elsewhere, config), status, retrain.parse_time(now))
    if retraining.start:
        request = retraining.start
        job = builders.training_job(resource, config, spec_hash, request["trigger"], retraining.attempt, request.get("reason"), bool(request.get("force")))
        result.create.append(job)
        last = {"job": job["metadata"]["name"], "specHash": spec_hash, "generation": generation, "startedAt": now, "trigger": request["trigger"]}
        training_running = True
    result.events += [Event(n.type, n.reason, n.message) for n in retraining.notices]
    result.requeue_after = retraining.requeue_after
    status["retrain"] = retraining.retrain or None
    set_(DRIFT_DETECTED, *retraining.drift_condition)

    # Jobs of an older spec that still run are wasted work.
    for job_state in observed.jobs.values():
        if job_state.name != last.get("job") and not job_state.finished:
            result.delete.append(("batch/v1", "Job", job_state.name))
    if training_running:
        set_(PROGRESSING, True, "Training", f"training job {last['job']} is running")
    status["lastTraining"] = last

    # --- serving ----------------------------------------------------------------------
    champion = status.get("championVersion")
    gate = last.get("gate") or {}
    candidate = last.get("modelVersion") if last.get("finishedAt") and gate.get("passed") and last.get("modelVersion") != champion else None
    wanted = [v for v in (champion, candidate) if v]
    for version in wanted:
        existing = observed.serving.get(version)
        variant = existing.variant if existing and existing.variant else CHAMPION
        result.apply.append(builders.serving_deployment(resource, config, version, variant))
        result.apply.append(builders.serving_service(resource, version, variant))
        hpa = builders.serving_hpa(resource, version, variant)
        if hpa:
            result.apply.append(hpa)

    candidate_ready = bool(candidate and observed.serving.get(candidate) and observed.serving[candidate].ready)
    decision = decide_traffic(resource.spec.rollout.strategy, champion, candidate, candidate_ready)
    if decision.promote and candidate:
        result.promote_version = candidate
        message = f"version {candidate} is champion" + (f", replacing version {champion}" if champion else "")
        result.events.append(Event("Normal", "Promoted", message))
        set_(PROMOTED, True, "Promoted", message)
        champion = candidate
        candidate = None
        wanted = [champion]
    if decision.weights:
        result.apply.append(builders.http_route(resource, config, decision.weights))
    for version in observed.serving:
        if version not in wanted:
            deployment_name = builders.serving_name(name, version)
            result.delete += [("apps/v1", "Deployment", deployment_name), ("v1", "Service", deployment_name)]
            if resource.spec.serving.autoscaling:
                result.delete.append(("autoscaling/v2", "HorizontalPodAutoscaler", deployment_name))

    status["championVersion"] = champion
    status["canaryVersion"] = decision.canary
    status["canaryWeight"] = decision.weights.get(status["canaryVersion"], 0) if status["canaryVersion"] else None
    status["traffic"] = [
        {"version": v, "weight": w, "role": CHAMPION if v == champion else "canary"} for v, w in sorted(decision.weights.items())
    ]
    status["modelName"] = resource.registered_model_name

    champion_ready = bool(champion and (decision.promote or (observed.serving.get(champion) and observed.serving[champion].ready)))
    if champion_ready:
        status["endpoint"] = builders.endpoint_url(resource, config)
        set_(READY, True, "ChampionServing", f"version {champion} serves {status['endpoint']}")
    elif champion:
        set_(READY, False, "ChampionNotReady", f"the pods of version {champion} are not ready")
    else:
        set_(READY, False, "NoChampion", "no version serves yet")

    training_failed = bool(last.get("finishedAt")) and (condition(conditions, TRAINED) or {}).get("status") == "False"
    if champion:
        if training_failed and not training_running:
            set_(DEGRADED, True, (condition(conditions, TRAINED) or {}).get("reason", "TrainingFailed"), f"still serving version {champion}; the latest training failed")
        else:
            set_(DEGRADED, False, "AsExpected", "")

    deploying = bool(candidate)
    if deploying and not training_running:
        set_(PROGRESSING, True, "Deploying", f"waiting for the pods of version {candidate}")
    elif not training_running:
        set_(PROGRESSING, False, "Idle", "nothing in flight")

    if training_running:
        phase = Phase.training
    elif deploying:
        phase = Phase.deploying
    elif champion:
        phase = Phase.degraded if training_failed else Phase.serving
    elif training_failed:
        phase = Phase.failed
    else:
        phase = Phase.pending
    status["phase"] = phase.value
    status["conditions"] = conditions
    status["observedGeneration"] = generation
    result.status = {k: v for k, v in status.items() if v is not None}
    return result
