"""The docs say what the generators make: docs/alerting.md's alertmanager.yml example is the
output of `modelship monitoring alertmanager --webhook-url ...`, and every generated alert has
its section in docs/runbooks.md (where its runbook_url points)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from modelship.monitoring import alertmanager, rules

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_the_alertmanager_example_is_the_generated_one() -> None:
    text = (DOCS / "alerting.md").read_text()
    (block,) = re.findall(r"```yaml\n(route:.*?)```", text, re.S)
    expected = alertmanager.alertmanager_yaml(alertmanager.routing(
        "http://modelship-operator.modelship-system.svc:8080/alerts", token_file="/etc/alertmanager/secrets/modelship-webhook-token",
        slack=alertmanager.Slack("#ml-alerts", api_url_file="/etc/alertmanager/secrets/slack-api-url"), email=alertmanager.Email("ml-team@example.com"),
    ))
    assert yaml.safe_load(block) == expected, "regenerate it: modelship monitoring alertmanager --webhook-url ... --slack-channel '#ml-alerts' --email-to ml-team@example.com"


def test_every_alert_has_a_runbook_section() -> None:
    sections = set(re.findall(r"^## (\w+)$", (DOCS / "runbooks.md").read_text(), re.M))
    alerts = {rule["alert"] for group in rules.rule_groups()["groups"] for rule in group["rules"] if "alert" in rule}
    assert alerts and alerts <= sections, alerts - sections
