"""approve / abort / rollback refuse what means nothing, with a clear message; status reads well."""

from __future__ import annotations

import pytest

from modelship.operator.requests import RequestRefused, abort_request, approve_request, describe, rollback_request


def body(status: dict) -> dict:
    return {"metadata": {"name": "housing", "namespace": "team-a"}, "spec": {"rollout": {"canary": {"steps": [{"weight": 10}, {"weight": 100}]}}}, "status": status}


WAITING = {"championVersion": "1", "rollout": {"candidate": "2", "phase": "AwaitingApproval"}}
STEPPING = {"championVersion": "1", "rollout": {"candidate": "2", "phase": "Progressing", "stepIndex": 0, "step": "1/2"}}
PROMOTED = {"championVersion": "2", "rollout": {"candidate": "2", "phase": "Promoted", "previousChampion": "1"}}


@pytest.mark.parametrize(
    "request_, status, expected",
    [
        (approve_request, WAITING, ("modelship.io/approve", "2")),
        (approve_request, STEPPING, "housing is not waiting for an approval (rollout phase: Progressing)"),
        (approve_request, {}, "housing is not waiting for an approval (rollout phase: none)"),
        (abort_request, STEPPING, ("modelship.io/abort", "2")),
        (abort_request, WAITING, ("modelship.io/abort", "2")),
        (abort_request, PROMOTED, "housing has no rollout in flight to abort (rollout phase: Promoted)"),
        (rollback_request, PROMOTED, ("modelship.io/rollback", "2")),
        (rollback_request, {"championVersion": "1"}, "housing has no previous version to roll back to"),
        (rollback_request, {"championVersion": "1", "rollout": {"previousChampion": "1"}}, "housing has no previous version to roll back to"),
    ],
)
def test_requests(request_, status, expected):
    if isinstance(expected, str):
        with pytest.raises(RequestRefused, match=expected.replace("(", r"\(").replace(")", r"\)")):
            request_(body(status))
    else:
        assert request_(body(status)) == expected


def test_status_print_shows_steps_weights_and_checks():
    status = {
        **STEPPING,
        "phase": "Progressing",
        "traffic": [{"version": "1", "weight": 90, "role": "champion"}, {"version": "2", "weight": 10, "role": "canary"}],
        "rollout": {
            **STEPPING["rollout"],
            "lastAnalysisAt": "2026-11-22T08:00:10Z",
            "failedChecks": 1,
            "checks": [{"name": "errorRate", "verdict": "Failed", "value": 0.25, "threshold": "<= 0.05", "message": "errorRate 0.25 is outside <= 0.05"}],
            "message": "step 1/2: version 2 takes 10% for 1m",
        },
    }
    text = describe(body(status))
    assert text.splitlines()[0] == "team-a/housing: Progressing"
    assert "traffic:   v1 90% (champion), v2 10% (canary)" in text
    assert "steps:     [10%] → 100%  (step 1/2" in text
    assert "errorRate    Failed              0.25  <= 0.05  errorRate 0.25 is outside <= 0.05" in text


AB_RUNNING = {"championVersion": "1", "rollout": {"phase": "ABTesting", "candidate": "2", "variants": [
    {"name": "champion", "version": "1", "weight": 80}, {"name": "challenger", "version": "2", "weight": 20, "header": "x-variant=challenger", "requests": 120.0, "errorRate": 0.0},
]}}


@pytest.mark.parametrize(
    "status, variant, expected",
    [
        (AB_RUNNING, "challenger", ("modelship.io/promote", "challenger:2")),
        (AB_RUNNING, "blue", "housing has no variant 'blue'; one of champion, challenger"),
        (AB_RUNNING, "champion", "variant champion serves version 1, the champion already"),
        (STEPPING, "challenger", "housing runs no A/B test (rollout phase: Progressing)"),
    ],
)
def test_promote_request(status, variant, expected):
    from modelship.operator.requests import promote_request

    if isinstance(expected, str):
        with pytest.raises(RequestRefused) as refused:
            promote_request(body(status), variant)
        assert str(refused.value) == expected
    else:
        assert promote_request(body(status), variant) == expected


def test_status_print_shows_each_variant():
    text = describe(body({**AB_RUNNING, "phase": "Progressing"}))
    assert "variant:   challenger → version 2 (20%, header x-variant=challenger) requests 120, error rate 0" in text
