"""The operator's own Prometheus metrics; their names live with every other Modelship metric
name in modelship.monitoring.metrics."""

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from modelship.api.v1alpha1 import RolloutPhase, Verdict

from modelship.monitoring import metrics as names
from modelship.operator.events import PROMOTED, RETRAIN_STARTED, ROLLED_BACK, Milestone

RECONCILES = Counter(names.OPERATOR_RECONCILES_TOTAL, "Reconciles of a ModelDeployment, by result.", ["result"])
RECONCILE_SECONDS = Histogram(names.OPERATOR_RECONCILE_SECONDS, "Time of one reconcile.", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ERRORS = Counter(names.OPERATOR_ERRORS_TOTAL, "Reconcile errors, by kind.", ["kind"])
TRAININGS_STARTED = Counter(names.OPERATOR_TRAININGS_STARTED_TOTAL, "Training Jobs created.", ["trigger"])
TRAININGS_FINISHED = Counter(names.OPERATOR_TRAININGS_FINISHED_TOTAL, "Training Jobs finished, by outcome.", ["outcome"])
TRAINING_SECONDS = Histogram(names.OPERATOR_TRAINING_SECONDS, "From Job creation to its recorded result.", buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200))
PROMOTIONS = Counter(names.OPERATOR_PROMOTIONS_TOTAL, "Versions promoted to champion (a rollback is counted in rollbacks_total).")
QUEUE_DEPTH = Gauge(names.OPERATOR_QUEUE_DEPTH, "ModelDeployments waiting for a reconcile.")
ALERTS = Counter(names.OPERATOR_ALERTS_TOTAL, "Alerts received on the Alertmanager webhook, by what became of them.", ["result"])
ALERT_WEBHOOK_REQUESTS = Counter(names.OPERATOR_ALERT_WEBHOOK_REQUESTS_TOTAL, "Calls of the Alertmanager webhook, by HTTP status.", ["code"])

ROLLOUT_PHASE = Gauge(names.OPERATOR_ROLLOUT_PHASE, "1 for the rollout's current phase.", ["model", "phase"])
ROLLOUT_STEP = Gauge(names.OPERATOR_ROLLOUT_STEP, "Current canary step, from 1 (0: none in flight).", ["model"])
TRAFFIC_WEIGHT = Gauge(names.OPERATOR_TRAFFIC_WEIGHT, "Percent of requests each version gets.", ["model", "version"])
ANALYSIS_VERDICT = Gauge(names.OPERATOR_ANALYSIS_VERDICT, "1 for the latest verdict of each analysis check.", ["model", "check", "verdict"])
ANALYSIS_VALUE = Gauge(names.OPERATOR_ANALYSIS_VALUE, "The value each analysis check measured last.", ["model", "check"])

ROLLBACKS = Counter(names.OPERATOR_ROLLBACKS_TOTAL, "Versions rolled back, by reason.", ["reason"])
_RESOURCE = ["namespace", names.LABEL_DEPLOYMENT, names.LABEL_MODEL, names.LABEL_VERSION]
#: Milestone kind → its timestamp gauge and the labels of its details.
MILESTONES: dict[str, tuple[Gauge, tuple[str, ...]]] = {
    RETRAIN_STARTED: (Gauge(names.OPERATOR_RETRAIN_STARTED_TIME, "Unix time a retraining started; version: the champion then.", [*_RESOURCE, names.LABEL_TRIGGER, names.LABEL_TRAINING_JOB]), (names.LABEL_TRIGGER, names.LABEL_TRAINING_JOB)),
    PROMOTED: (Gauge(names.OPERATOR_PROMOTED_TIME, "Unix time a version was made champion.", [*_RESOURCE, names.LABEL_PREVIOUS_VERSION]), (names.LABEL_PREVIOUS_VERSION,)),
    ROLLED_BACK: (Gauge(names.OPERATOR_ROLLED_BACK_TIME, "Unix time a version was rolled back.", [*_RESOURCE, names.LABEL_REASON, names.LABEL_CHAMPION_VERSION]), (names.LABEL_REASON, names.LABEL_CHAMPION_VERSION)),
}
#: How long a milestone's series stays exported: longer than any notification alert's window
#: (modelship.monitoring.rules.NOTIFICATION_WINDOW_SECONDS), short enough that the series do not pile up.
MILESTONE_RETENTION_SECONDS = 3600.0
#: (kind, label values) → when, for every milestone series exported.
_milestones: dict[tuple[str, tuple[str, ...]], float] = {}

#: Label values set per model, so that a version or check that is gone is removed, not frozen.
_shown: dict[str, dict[str, set[Any]]] = {}


def record_rollout(model: str, status: dict[str, Any]) -> None:
    """Mirror one resource's status (wire form) into the rollout gauges."""
    rollout = status.get("rollout") or {}
    shown = _shown.setdefault(model, {"versions": set(), "checks": set()})
    for phase in RolloutPhase:
        ROLLOUT_PHASE.labels(model, phase.value).set(1 if rollout.get("phase") == phase.value else 0)
    in_step = rollout.get("phase") in (RolloutPhase.progressing.value, RolloutPhase.awaiting_approval.value)
    ROLLOUT_STEP.labels(model).set((rollout.get("stepIndex") or 0) + 1 if in_step else 0)
    weights = {entry["version"]: entry["weight"] for entry in status.get("traffic") or []}
    for version in shown["versions"] - weights.keys():
        _drop(TRAFFIC_WEIGHT, model, version)
    for version, weight in weights.items():
        TRAFFIC_WEIGHT.labels(model, version).set(weight)
    shown["versions"] = set(weights)
    checks = {check["name"]: check for check in rollout.get("checks") or []} if in_step else {}
    _drop_checks(model, shown["checks"] - checks.keys())
    for name, check in checks.items():
        for verdict in Verdict:
            ANALYSIS_VERDICT.labels(model, name, verdict.value).set(1 if check["verdict"] == verdict.value else 0)
        ANALYSIS_VALUE.labels(model, name).set(check["value"] if check.get("value") is not None else float("nan"))
    shown["checks"] = set(checks)


def record_milestone(namespace: str, deployment: str, model: str, milestone: Milestone, at: float | None = None) -> None:
    """Export a milestone's time (now unless ``at``); series older than the retention go."""
    at = time.time() if at is None else at
    gauge, detail_labels = MILESTONES[milestone.kind]
    details = dict(milestone.details)
    values = (namespace, deployment, model, milestone.version, *(details.get(label, "") for label in detail_labels))
    for key, when in list(_milestones.items()):
        if at - when > MILESTONE_RETENTION_SECONDS:
            _forget_milestone(key)
    gauge.labels(*values).set(at)
    _milestones[(milestone.kind, values)] = at
    # Counted from the milestone, not from the alias move: a rollback moves the alias too.
    if milestone.kind == PROMOTED:
        PROMOTIONS.inc()
    elif milestone.kind == ROLLED_BACK:
        ROLLBACKS.labels(details.get(names.LABEL_REASON, "")).inc()


def _forget_milestone(key: tuple[str, tuple[str, ...]]) -> None:
    _milestones.pop(key, None)
    _drop(MILESTONES[key[0]][0], *key[1])


def forget_rollout(model: str) -> None:
    """Drop a deleted resource's rollout series."""
    for key in [key for key in _milestones if key[1][2] == model]:
        _forget_milestone(key)
    shown = _shown.pop(model, {"versions": set(), "checks": set()})
    for phase in RolloutPhase:
        _drop(ROLLOUT_PHASE, model, phase.value)
    _drop(ROLLOUT_STEP, model)
    for version in shown["versions"]:
        _drop(TRAFFIC_WEIGHT, model, version)
    _drop_checks(model, shown["checks"])


def _drop_checks(model: str, checks: set[str]) -> None:
    for name in checks:
        _drop(ANALYSIS_VALUE, model, name)
        for verdict in Verdict:
            _drop(ANALYSIS_VERDICT, model, name, verdict.value)


def _drop(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass
