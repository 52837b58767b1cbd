"""Condition types, reasons and the one function that writes a condition (Flagger's
``MakeStatusConditions`` habit: keep ``lastTransitionTime`` when the status did not change)."""

from __future__ import annotations

from typing import Any

#: A version trained, registered and passed the quality gate (False: the last training failed).
TRAINED = "Trained"
#: A champion serves requests behind the endpoint.
READY = "Ready"
#: Something is moving: a training, a deployment or a rollout in flight.
PROGRESSING = "Progressing"
#: The last candidate became champion (False: it was rolled back).
PROMOTED = "Promoted"
#: Live inputs drifted from the training data.
DRIFT_DETECTED = "DriftDetected"
#: Serving continues, but the latest attempt to change it failed.
DEGRADED = "Degraded"

CONDITION_TYPES = (TRAINED, READY, PROGRESSING, PROMOTED, DRIFT_DETECTED, DEGRADED)


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new list with ``type_`` set; ``lastTransitionTime`` moves only when the status changes."""
    status_text = "Unknown" if status is None else ("True" if status else "False")
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed_status = previous is None or previous.get("status") != status_text
    condition = {
        "type": type_,
        "status": status_text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed_status else previous.get("lastTransitionTime", now),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    others = [c for c in conditions if c.get("type") != type_]
    ordered = others + [condition]
    return sorted(ordered, key=lambda c: CONDITION_TYPES.index(c["type"]) if c["type"] in CONDITION_TYPES else len(CONDITION_TYPES))


def condition(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
