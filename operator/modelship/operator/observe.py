"""Reading the state of owned objects into plain data the decisions take. Pure parsing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelship.api.results import TrainingResult
from modelship.api.names import DEPLOYMENT_LABEL, VARIANT_LABEL, VERSION_LABEL
from modelship.operator.builders import TRAINING_CONTAINER


@dataclass(frozen=True)
class JobState:
    name: str
    finished: bool = False
    succeeded: bool = False
    #: Why the Job failed, from its conditions (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy).
    failure: str | None = None
    result: TrainingResult | None = None
    #: The raw termination message when it was not a result (a crash's last log lines).
    message: str | None = None


@dataclass(frozen=True)
class ServingState:
    version: str
    ready: bool
    variant: str | None = None


@dataclass
class Observed:
    jobs: dict[str, JobState] = field(default_factory=dict)
    serving: dict[str, ServingState] = field(default_factory=dict)
    #: Retraining Jobs the operator runs for other ModelDeployments (its concurrency limit).
    retrains_elsewhere: int = 0


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def job_finished(job: dict[str, Any]) -> bool:
    """Terminal conditions only: with ``FailureTarget``/``SuccessCriteriaMet`` the Job is still
    winding down, and its pods' termination messages may not be there yet."""
    return bool(_condition(job, "Complete") or _condition(job, "Failed"))


def parse_result(message: str | None) -> TrainingResult | None:
    """The training result in a termination message, or None when the message is something else."""
    if not message:
        return None
    text = message.strip().splitlines()[-1] if message.strip() else ""
    try:
        return TrainingResult.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return None


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == TRAINING_CONTAINER and status.get("state", {}).get("terminated"):
            return status["state"]["terminated"]
    return None


def job_state(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobState:
    """What a training Job ended with: its conditions, and the newest pod's termination message."""
    name = job["metadata"]["name"]
    if not job_finished(job):
        return JobState(name)
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    terminated = [t for t in (_terminated(p) for p in pods) if t]
    terminated.sort(key=lambda t: t.get("finishedAt") or "")
    last = terminated[-1] if terminated else {}
    message = last.get("message")
    result = parse_result(message)
    failure = None
    if failed and not complete:
        failure = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip(": ")
    return JobState(
        name,
        finished=True,
        succeeded=bool(complete),
        failure=failure,
        result=result,
        message=None if result else message,
    )


def serving_state(deployment: dict[str, Any]) -> ServingState:
    labels = deployment["metadata"].get("labels") or {}
    spec_replicas = deployment.get("spec", {}).get("replicas", 1)
    status = deployment.get("status") or {}
    current = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    ready = current and (status.get("readyReplicas") or 0) >= max(spec_replicas, 1) and (status.get("updatedReplicas") or 0) >= max(spec_replicas, 1)
    return ServingState(labels.get(VERSION_LABEL, ""), ready, labels.get(VARIANT_LABEL))


class OwnedObjects:
    """The operator's Jobs and serving Deployments as the watch last showed them, by the
    ModelDeployment they belong to. kopf already streams every event of both kinds; keeping
    the bodies lets a reconcile read them here instead of listing both kinds on the API server
    each time (during a rollout, two of a reconcile's four calls).

    Stale for a moment at most: an event is recorded before its key is queued, so a reconcile
    sees at least the state that triggered it; what the operator itself just wrote is in no
    decision's way (an apply is idempotent, a second create of a Job is a conflict, ignored)."""

    def __init__(self) -> None:
        self.owners: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        #: Whether a full listing was loaded; until then reconciles list on the API server.
        self.primed = False

    @staticmethod
    def _owner(obj: dict[str, Any]) -> tuple[str, str] | None:
        metadata = obj.get("metadata") or {}
        owner = (metadata.get("labels") or {}).get(DEPLOYMENT_LABEL)
        return (metadata.get("namespace") or "", owner) if owner else None

    def seen(self, event_type: str | None, kind: str, obj: dict[str, Any]) -> None:
        """One watch event of a ``kind`` object (type None: kopf's initial listing)."""
        owner = self._owner(obj)
        if owner is None:
            return
        if event_type == "DELETED":
            self.drop(*owner, kind, obj["metadata"]["name"])
            return
        key = (kind, obj["metadata"]["name"])
        kept = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
        self.owners.setdefault(owner, {})[key] = kept

    def drop(self, namespace: str, owner: str, kind: str, name: str) -> None:
        """The object is gone (its DELETED event, or the operator deleted it)."""
        objects = self.owners.get((namespace, owner), {})
        objects.pop((kind, name), None)
        if not objects:
            self.owners.pop((namespace, owner), None)

    def load(self, listed: dict[str, list[dict[str, Any]]]) -> None:
        """A full listing, kind → objects (at start, before the watch's events arrive)."""
        for kind, objects in listed.items():
            for obj in objects:
                self.seen(None, kind, obj)
        self.primed = True

    def of(self, namespace: str, name: str, kind: str) -> list[dict[str, Any]]:
        return [obj for (obj_kind, _), obj in sorted(self.owners.get((namespace, name), {}).items()) if obj_kind == kind]
