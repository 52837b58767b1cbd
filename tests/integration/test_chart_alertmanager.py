"""The chart's opt-in AlertmanagerConfig: off by default, rendered from the generated spec, the
Slack and e-mail receivers only when enabled, and accepted by a real API server with the
Prometheus Operator's CRD (strict validation)."""

from __future__ import annotations

import pytest
import yaml

from modelship.monitoring import alertmanager
from test_chart import render

pytestmark = pytest.mark.integration
ON = "monitoring.alertmanagerConfig.enabled=true"


def config(documents):
    return [d for d in documents if d["kind"] == "AlertmanagerConfig"]


def test_off_unless_asked(cluster):
    assert config(render(cluster)) == []


def test_the_generated_routing_with_the_releases_values(cluster):
    (plain,) = config(render(cluster, ON))
    expected = alertmanager.alertmanager_config_spec(alertmanager.routing(
        "http://ms-operator.modelship-system.svc:8080/alerts", token_secret=("modelship-alert-webhook", "token"), timing=alertmanager.Timing("30s", "5m", "1h"),
    ))
    assert plain["spec"] == expected
    (full,) = config(render(cluster, ON, "monitoring.alertmanagerConfig.slack.enabled=true", "monitoring.alertmanagerConfig.email.enabled=true", "monitoring.alertmanagerConfig.email.to=ops@example.com"))
    notify = next(r for r in full["spec"]["receivers"] if r["name"] == alertmanager.NOTIFY_RECEIVER)
    assert notify["emailConfigs"] == [{"to": "ops@example.com", "sendResolved": True}]
    slack = notify["slackConfigs"][0]
    assert slack["channel"] == "#ml-alerts" and slack["apiURL"] == {"name": "modelship-slack", "key": "url"}
    # Alertmanager's own templates reach it untouched by Helm.
    assert slack["title"] == "{{ .CommonLabels.alertname }}" and slack["text"].startswith("{{ range .Alerts }}")


def test_accepted_by_the_api_server(cluster):
    cluster.kubectl("create", "namespace", "modelship-system", check=False)
    for sets in ([ON], [ON, "monitoring.alertmanagerConfig.slack.enabled=true", "monitoring.alertmanagerConfig.email.enabled=true"]):
        documents = config(render(cluster, *sets))
        result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(documents))
        assert result.returncode == 0, result.stderr
