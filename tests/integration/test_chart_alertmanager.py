"""The chart's opt-in AlertmanagerConfig: off by default, rendered from the generated spec, the
Slack and e-mail receivers only when enabled, and accepted by a real API server with the
Prometheus Operator's CRD (strict validation)."""

from __future__ import annotations

import pytest
import yaml

from modelship.monitoring import alertmanager
from helmchart import render

pytestmark = pytest.mark.integration
ON = "monitoring.alertmanagerConfig.enabled=true"


def config(documents):
    return [d for d in documents if d["kind"] == "AlertmanagerConfig"]


def test_off_unless_asked():
    assert config(render()) == []


def test_the_generated_routing_with_the_releases_values():
    (plain,) = config(render(ON))
    expected = alertmanager.alertmanager_config_spec(alertmanager.routing(
        "http://ms-operator.modelship-system.svc:8080/alerts", token_secret=("ms-webhook-token", "token"), timing=alertmanager.Timing("30s", "5m", "1h"),
    ))
    assert plain["spec"] == expected
    # Alertmanager sends the very token the operator reads: its Secret, the user's one included.
    (own,) = config(render(ON, "operator.webhook.existingSecret=my-token"))
    (operator,) = [r for r in own["spec"]["receivers"] if r["name"] == alertmanager.OPERATOR_RECEIVER]
    assert operator["webhookConfigs"][0]["httpConfig"]["authorization"]["credentials"] == {"name": "my-token", "key": "token"}
    (full,) = config(render(ON, "monitoring.alertmanagerConfig.slack.enabled=true", "monitoring.alertmanagerConfig.email.enabled=true", "monitoring.alertmanagerConfig.email.to=ops@example.com"))
    notify = next(r for r in full["spec"]["receivers"] if r["name"] == alertmanager.NOTIFY_RECEIVER)
    assert [{k: v for k, v in c.items() if k != "text"} for c in notify["emailConfigs"]] == [{"to": "ops@example.com", "sendResolved": True}]
    slack = notify["slackConfigs"][0]
    assert slack["channel"] == "#ml-alerts" and slack["apiURL"] == {"name": "modelship-slack", "key": "url"}
    # Alertmanager's own templates reach it untouched by Helm.
    assert slack["title"] == "{{ .CommonLabels.alertname }}" and slack["text"].startswith("{{ range .Alerts }}")
    # The milestone notifications go to the same channel and address, without "resolved".
    milestones = next(r for r in full["spec"]["receivers"] if r["name"] == alertmanager.MILESTONE_RECEIVER)
    assert milestones["slackConfigs"][0]["channel"] == "#ml-alerts" and milestones["slackConfigs"][0]["sendResolved"] is False
    assert milestones["emailConfigs"][0]["to"] == "ops@example.com" and milestones["emailConfigs"][0]["sendResolved"] is False


def test_accepted_by_the_api_server(cluster):
    cluster.kubectl("create", "namespace", "modelship-system", check=False)
    for sets in ([ON], [ON, "monitoring.alertmanagerConfig.slack.enabled=true", "monitoring.alertmanagerConfig.email.enabled=true"]):
        documents = config(render(*sets))
        result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(documents))
        assert result.returncode == 0, result.stderr
