"""Traffic between the champion and a candidate version: pure arithmetic, no I/O.

This slice implements the ``immediate`` step for every strategy: a candidate takes all traffic
once its pods are ready. The canary and A/B steps (weights, PromQL analysis, promote or roll
back) plug in here, behind the same ``decide_traffic`` signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrafficDecision:
    #: Model version → percent of requests.
    weights: dict[str, int] = field(default_factory=dict)
    #: Make the candidate the champion now.
    promote: bool = False
    #: Version under rollout still taking part (None once promoted or without a candidate).
    canary: str | None = None


def decide_traffic(strategy: str, champion: str | None, candidate: str | None, candidate_ready: bool) -> TrafficDecision:
    if candidate and candidate_ready:
        return TrafficDecision(weights={candidate: 100}, promote=True)
    if champion:
        return TrafficDecision(weights={champion: 100}, canary=candidate)
    if candidate:
        # The first version: the route already points at it; it is promoted once ready.
        return TrafficDecision(weights={candidate: 100}, canary=None)
    return TrafficDecision()
