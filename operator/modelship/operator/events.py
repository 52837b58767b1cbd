"""A Kubernetes Event the reconcile posts on its ModelDeployment: decided by the pure parts
(training, rollout, retrain policy), posted by the controller."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
