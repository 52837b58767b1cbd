"""The alert webhook in-process: payload parsing, routing an alert to its resource, and the HTTP
answers (401, 413, 400, 200). The receiver's writes to the API server are exercised for real in
tests/integration/test_driftloop.py; here a receiver that only remembers what it got stands in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from modelship.monitoring import metrics as names
from modelship.monitoring.rules import DRIFT_ALERT, DRIFTED_FEATURES_ANNOTATION, QUALITY_DROP_ALERT
from modelship.operator import http, retrain
from modelship.operator.alerts import IGNORED, UNROUTED, UNWATCHED, AlertReceiver, WebhookPayload, drift_alert

TOKEN = "0123456789abcdef0123456789abcdef"
LABELS = {"alertname": DRIFT_ALERT, "namespace": "team-a", names.LABEL_DEPLOYMENT: "housing", "model": "team-a-housing", "version": "3", "variant": "champion", "severity": "warning"}
#: The labels the generated ModelshipQualityDrop rule gives its alerts.
QUALITY_LABELS = {**LABELS, "alertname": QUALITY_DROP_ALERT, names.LABEL_METRIC: "mae", "component": "model"}


def body(**alert) -> dict:
    """An Alertmanager webhook body (version 4) as Alertmanager 0.25 sends it."""
    return {
        "receiver": "modelship-operator", "status": "firing", "version": "4", "truncatedAlerts": 0,
        "groupKey": '{}/{alertname=~"Modelship.*"}:{alertname="ModelshipDataDrift"}', "groupLabels": {"alertname": DRIFT_ALERT},
        "commonLabels": LABELS, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing", "labels": LABELS, "annotations": {DRIFTED_FEATURES_ANNOTATION: "median_income=0.812"},
            "startsAt": "2026-11-22T07:50:00.123Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": "4c1b0e2f5a6d7e8f",
            **alert,
        }],
    }


def test_the_payload_parses_into_what_the_policy_reads():
    payload = WebhookPayload.model_validate(body())
    alert = drift_alert(payload.alerts[0])
    assert (alert.firing, alert.fingerprint, alert.starts_at, alert.version, alert.features) == (True, "4c1b0e2f5a6d7e8f", "2026-11-22T07:50:00.123Z", "3", "median_income=0.812")
    resolved = drift_alert(WebhookPayload.model_validate(body(status="resolved", endsAt="2026-11-22T08:10:00Z")).alerts[0])
    assert not resolved.firing and resolved.ends_at == "2026-11-22T08:10:00Z"


def test_a_quality_alert_parses_into_a_quality_request():
    summary = "Live mae of team-a/housing is 0.93, past its threshold"
    alert = drift_alert(WebhookPayload.model_validate(body(labels=QUALITY_LABELS, annotations={"summary": summary})).alerts[0])
    assert (alert.trigger, alert.version, alert.features, alert.detail) == (retrain.TRIGGER_QUALITY, "3", "", summary)
    update = retrain.record_alert({}, alert, "2026-11-22T08:00:00Z")
    assert "drift" not in update and update["retrain"]["pending"]["trigger"] == "quality"
    assert drift_alert(WebhookPayload.model_validate(body()).alerts[0]).trigger == retrain.TRIGGER_DRIFT


@pytest.mark.parametrize("broken", [{"version": "3"}, {"alerts": [{"status": "firing"}]}, {"status": "pending"}, {"alerts": None}])
def test_other_bodies_are_refused(broken):
    with pytest.raises(ValidationError):
        WebhookPayload.model_validate({**body(), **broken})


@pytest.mark.parametrize(
    ("labels", "namespaces", "expected"),
    [
        (LABELS, [], ("team-a", "housing")),
        (LABELS, ["team-a"], ("team-a", "housing")),
        (LABELS, ["team-b"], UNWATCHED),
        ({**LABELS, "alertname": "ModelshipHighErrorRate"}, [], IGNORED),
        (QUALITY_LABELS, [], ("team-a", "housing")),
        (QUALITY_LABELS, ["team-b"], UNWATCHED),
        ({k: v for k, v in LABELS.items() if k != names.LABEL_DEPLOYMENT}, [], UNROUTED),
    ],
)
def test_an_alert_leads_to_its_resource(labels, namespaces, expected):
    receiver = AlertReceiver(kube=None, enqueue=lambda *_: None, namespaces=namespaces)  # type: ignore[arg-type]
    assert receiver.route(WebhookPayload.model_validate(body(labels=labels)).alerts[0]) == expected


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (None, False),
        ("Bearer ", False),
        (f"Basic {TOKEN}", False),
        ("Bearer " + "0" * len(TOKEN), False),  # same length
        (f"Bearer {TOKEN[:-1]}", False),  # shorter
        (f"Bearer {TOKEN}0", False),  # longer
    ],
)
def test_bearer_tokens_compare(header, ok):
    assert http.authorized(header, TOKEN.encode()) is ok


class RememberingReceiver(AlertReceiver):
    def __init__(self) -> None:
        super().__init__(kube=None, enqueue=lambda *_: None)  # type: ignore[arg-type]
        self.received: list[WebhookPayload] = []

    async def receive(self, payload: WebhookPayload) -> dict[str, int]:
        self.received.append(payload)
        return {"recorded": len(payload.alerts)}


@pytest.fixture
def app(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    receiver = RememberingReceiver()
    client = TestClient(http.build_app(lambda: True, receiver, str(token_file), max_body_bytes=4096))
    return client, receiver, token_file


def test_the_webhook_answers(app):
    client, receiver, _ = app
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/alerts", json=body(), headers=auth).json() == {"alerts": {"recorded": 1}}
    assert client.post("/alerts", json=body()).status_code == 401
    forged = client.post("/alerts", json=body(), headers={"Authorization": "Bearer wrong"})
    assert forged.status_code == 401 and forged.headers["www-authenticate"] == "Bearer" and TOKEN not in forged.text
    assert client.post("/alerts", content=b"x" * 5000, headers=auth).status_code == 413
    # Oversized and unauthenticated: 401 before the body is read.
    assert client.post("/alerts", content=b"x" * 5000).status_code == 401
    bad = client.post("/alerts", content=b"{nope", headers=auth)
    assert bad.status_code == 400 and "version 4" in bad.json()["error"]
    wrong_version = client.post("/alerts", content=json.dumps({**body(), "version": "3"}), headers=auth)
    assert wrong_version.status_code == 400 and any(line.startswith("version") for line in wrong_version.json()["detail"])
    assert len(receiver.received) == 1


def test_a_rotated_token_takes_effect_and_an_unreadable_one_refuses(app):
    client, _, token_file = app
    token_file.write_text("rotated-token")
    assert client.post("/alerts", json=body(), headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    assert client.post("/alerts", json=body(), headers={"Authorization": "Bearer rotated-token"}).status_code == 200
    token_file.unlink()
    assert client.post("/alerts", json=body(), headers={"Authorization": "Bearer rotated-token"}).status_code == 503


def test_without_a_token_file_there_is_no_webhook():
    client = TestClient(http.build_app(lambda: True, RememberingReceiver(), None))
    assert client.post("/alerts", json=body()).status_code in (404, 405)
    assert client.get("/healthz").status_code == 200


def test_operator_settings_of_the_loop_come_from_the_environment():
    from modelship.operator.config import OperatorConfig

    default = OperatorConfig.from_env({})
    assert (default.alert_token_file, default.alert_max_body_bytes, default.max_concurrent_retrains) == (None, 1 << 20, 2)
    set_ = OperatorConfig.from_env({"MODELSHIP_ALERT_TOKEN_FILE": "/var/run/secrets/token", "MODELSHIP_ALERT_MAX_BODY_BYTES": "4096", "MODELSHIP_MAX_CONCURRENT_RETRAINS": "5"})
    assert (set_.alert_token_file, set_.alert_max_body_bytes, set_.max_concurrent_retrains) == ("/var/run/secrets/token", 4096, 5)
