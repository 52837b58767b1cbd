"""The generated Alertmanager routing, checked by Alertmanager's own ``amtool``: the plain
alertmanager.yml (with the optional Slack and e-mail receivers) is valid and routes each alert
where it should; the chart's AlertmanagerConfig spec says the same thing in its own spelling."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modelship.monitoring import alertmanager
from modelship.monitoring.rules import DRIFT_ALERT, ERROR_RATE_ALERT, PROMOTED_ALERT, QUALITY_DROP_ALERT, RETRAIN_STARTED_ALERT, ROLLED_BACK_ALERT

WEBHOOK = "http://modelship-operator.modelship-system.svc:8080/alerts"


def _amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        raise FileNotFoundError("amtool not found: `hack/setup.sh --test` installs the Debian package prometheus-alertmanager")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    routing = alertmanager.routing(WEBHOOK, token_file="/etc/am/token", slack=alertmanager.Slack("#ml", api_url_file="/etc/am/slack"), email=alertmanager.Email("ml@example.com"))
    document = alertmanager.alertmanager_file(routing)
    document["global"] = {"smtp_smarthost": "mail.example.com:587", "smtp_from": "alertmanager@example.com"}
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_the_plain_config_is_valid(config_file: Path) -> None:
    result = subprocess.run([_amtool(), "check-config", str(config_file)], capture_output=True, text=True)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"alertname": DRIFT_ALERT, "namespace": "team-a", "modelship_io_deployment": "housing"}, "modelship-operator,modelship-notify"),
        ({"alertname": QUALITY_DROP_ALERT, "namespace": "team-a", "modelship_io_deployment": "housing", "metric": "mae"}, "modelship-operator,modelship-notify"),
        ({"alertname": ERROR_RATE_ALERT, "namespace": "team-a"}, "modelship-notify"),
        # Milestones reach people (with no "resolved" message), never the operator's webhook.
        ({"alertname": RETRAIN_STARTED_ALERT, "namespace": "team-a", "modelship_io_deployment": "housing", "trigger": "drift"}, "modelship-milestones"),
        ({"alertname": PROMOTED_ALERT, "namespace": "team-a", "modelship_io_deployment": "housing", "version": "2"}, "modelship-milestones"),
        ({"alertname": ROLLED_BACK_ALERT, "namespace": "team-a", "modelship_io_deployment": "housing", "version": "2"}, "modelship-milestones"),
        ({"alertname": "KubePodCrashLooping"}, "null"),
    ],
)
def test_routes(config_file: Path, labels: dict[str, str], receivers: str) -> None:
    result = subprocess.run([_amtool(), "config", "routes", "test", f"--config.file={config_file}", *(f"{k}={v}" for k, v in labels.items())], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_the_webhook_needs_its_token() -> None:
    with pytest.raises(ValueError, match="bearer token"):
        alertmanager.routing(WEBHOOK)


def _snake(name: str) -> str:
    return {"apiURL": "api_url", "httpConfig": "http_config", "maxAlerts": "max_alerts"}.get(name) or "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def test_the_chart_says_the_same_as_the_plain_file() -> None:
    routing = alertmanager.routing(WEBHOOK, token_file="/t", token_secret=("modelship-alert-webhook", "token"), slack=alertmanager.Slack("#ml", api_url_file="/s", secret=("slack", "url")), email=alertmanager.Email("ml@example.com"))
    plain, crd = alertmanager.alertmanager_yaml(routing), alertmanager.alertmanager_config_spec(routing)

    def shape(node, secret_keys=("credentials_file", "api_url_file", "credentials", "api_url", "matchers")):
        if isinstance(node, dict):
            return {_snake(k): shape(v) for k, v in node.items() if _snake(k) not in secret_keys}
        if isinstance(node, list):
            return [shape(v) for v in node]
        return node

    assert shape(plain) == shape(crd)
    assert [m for m in crd["route"]["routes"][0]["matchers"]] == [{"name": "alertname", "value": f"{DRIFT_ALERT}|{QUALITY_DROP_ALERT}", "matchType": "=~"}]
    assert plain["route"]["routes"][0]["matchers"] == [f'alertname=~"{DRIFT_ALERT}|{QUALITY_DROP_ALERT}"']


def test_milestone_receivers_send_no_resolved_message(config_file: Path) -> None:
    document = yaml.safe_load(config_file.read_text())
    (milestones,) = [r for r in document["receivers"] if r["name"] == alertmanager.MILESTONE_RECEIVER]
    (notify,) = [r for r in document["receivers"] if r["name"] == alertmanager.NOTIFY_RECEIVER]
    assert [c["send_resolved"] for c in milestones["slack_configs"] + milestones["email_configs"]] == [False, False]
    assert [c["send_resolved"] for c in notify["slack_configs"] + notify["email_configs"]] == [True, True]
