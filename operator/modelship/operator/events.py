"""A Kubernetes Event the reconcile posts on its ModelDeployment: decided by the pure parts
(training, rollout, retrain policy), posted by the controller."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


#: Kinds of :class:`Milestone`.
RETRAIN_STARTED = "RetrainStarted"
PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"


@dataclass(frozen=True)
class Milestone:
    """A moment people hear of without watching a dashboard: a retraining started, a version made
    champion, a version rolled back. Decided by the pure parts with the Events; the controller
    sets the operator's timestamp gauge of it once the status says so, and the generated
    notification alerts (modelship.monitoring.rules) carry it to Alertmanager."""

    kind: str
    #: The promoted or rolled-back version; for a retraining, the champion it may replace ("": none).
    version: str
    #: The kind's own labels (modelship.monitoring.metrics: trigger and training_job;
    #: previous_version; reason and champion_version), as (label, value) pairs.
    details: tuple[tuple[str, str], ...] = ()
