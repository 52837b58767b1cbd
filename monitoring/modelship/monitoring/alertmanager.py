"""Alertmanager routing of the Modelship alerts, from one place in two forms.

:func:`routing` says what goes where: ModelshipDataDrift and ModelshipQualityDrop to the operator's webhook (which
retrains when the ModelDeployment asks for it), and every Modelship alert to the optional Slack
and e-mail receivers. The notifications of retrainings, promotions and rollbacks
(:data:`rules.NOTIFICATION_ALERTS`) go to people only, through a receiver of their own that
sends no "resolved" message: such an alert resolves by itself once its window is over, which is
no news. :func:`alertmanager_yaml` renders it as the ``route`` and ``receivers`` of
a plain ``alertmanager.yml`` (docs/alerting.md; the tests run a real Alertmanager on it), and
:func:`alertmanager_config_spec` as the spec of a Prometheus Operator ``AlertmanagerConfig``
(the chart's, generated into ``charts/modelship/files/alertmanagerconfig-spec.yaml`` with Helm
expressions where the release fills in values).

Alerts are grouped per resource and version, so Alertmanager's own repeats carry the same
fingerprint and start time, which the operator drops as already handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelship import generated
from modelship.monitoring import metrics as m
from modelship.monitoring.rules import DRIFT_ALERT, NOTIFICATION_ALERTS, QUALITY_DROP_ALERT

OPERATOR_RECEIVER = "modelship-operator"
NOTIFY_RECEIVER = "modelship-notify"
#: The people's receiver for the milestone notifications: the same Slack and e-mail, no "resolved".
MILESTONE_RECEIVER = "modelship-milestones"
#: The alerts the operator's webhook acts on; nothing else reaches it.
OPERATOR_ALERTS = f"{DRIFT_ALERT}|{QUALITY_DROP_ALERT}"
MILESTONE_ALERTS = "|".join(NOTIFICATION_ALERTS)
GROUP_BY = ("alertname", "namespace", m.LABEL_DEPLOYMENT, m.LABEL_VERSION, m.LABEL_VARIANT)
#: Every alert the generated rules raise starts with this.
ALERT_PREFIX = "Modelship"

CHART_OUTPUTS = (Path("charts/modelship/files/alertmanagerconfig-spec.yaml"),)


@dataclass(frozen=True)
class Timing:
    group_wait: str = "30s"
    group_interval: str = "5m"
    #: Alertmanager re-sends a firing alert this often; the operator drops the repeats.
    repeat_interval: str = "1h"


@dataclass(frozen=True)
class Slack:
    channel: str
    #: alertmanager.yml: a file holding the incoming-webhook URL (api_url_file).
    api_url_file: str | None = None
    #: AlertmanagerConfig: the Secret key holding it.
    secret: tuple[str, str] | None = None


@dataclass(frozen=True)
class Email:
    to: str


@dataclass(frozen=True)
class Routing:
    webhook_url: str
    #: alertmanager.yml: file holding the webhook's bearer token (credentials_file).
    token_file: str | None = None
    #: AlertmanagerConfig: (Secret name, key) holding the token.
    token_secret: tuple[str, str] | None = None
    slack: Slack | None = None
    email: Email | None = None
    timing: Timing = field(default_factory=Timing)


def routing(
    webhook_url: str,
    token_file: str | None = None,
    token_secret: tuple[str, str] | None = None,
    slack: Slack | None = None,
    email: Email | None = None,
    timing: Timing = Timing(),
) -> Routing:
    if not (token_file or token_secret):
        raise ValueError("the operator's webhook needs its bearer token: give token_file (alertmanager.yml) or token_secret (AlertmanagerConfig)")
    return Routing(webhook_url, token_file, token_secret, slack, email, timing)


def _summary_text() -> str:
    return "{{ range .Alerts }}{{ .Annotations.summary }}{{ if .Annotations.drifted_features }}: {{ .Annotations.drifted_features }}{{ end }}\n{{ end }}"


def _people(name: str, r: Routing, send_resolved: bool) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": name}
    if r.slack:
        receiver["slack_configs"] = [{"channel": r.slack.channel, "api_url_file": r.slack.api_url_file, "send_resolved": send_resolved, "title": "{{ .CommonLabels.alertname }}", "text": _summary_text()}]
    if r.email:
        receiver["email_configs"] = [{"to": r.email.to, "send_resolved": send_resolved, "text": _summary_text()}]
    return receiver


def alertmanager_yaml(r: Routing) -> dict[str, Any]:
    """``route`` and ``receivers`` for alertmanager.yml (merge the route under your root route)."""
    operator: dict[str, Any] = {"url": r.webhook_url, "send_resolved": True, "max_alerts": 50, "http_config": {"authorization": {"type": "Bearer", "credentials_file": r.token_file}}}
    timing = {"group_wait": r.timing.group_wait, "group_interval": r.timing.group_interval, "repeat_interval": r.timing.repeat_interval}
    return {
        "route": {
            "receiver": NOTIFY_RECEIVER,
            "group_by": list(GROUP_BY),
            "matchers": [f'alertname=~"{ALERT_PREFIX}.*"'],
            **timing,
            "routes": [
                # The operator first; `continue` lets people hear of the same alert.
                {"receiver": OPERATOR_RECEIVER, "matchers": [f'alertname=~"{OPERATOR_ALERTS}"'], "continue": True},
                {"receiver": MILESTONE_RECEIVER, "matchers": [f'alertname=~"{MILESTONE_ALERTS}"']},
                {"receiver": NOTIFY_RECEIVER},
            ],
        },
        "receivers": [{"name": OPERATOR_RECEIVER, "webhook_configs": [operator]}, _people(NOTIFY_RECEIVER, r, True), _people(MILESTONE_RECEIVER, r, False)],
    }


def alertmanager_file(r: Routing) -> dict[str, Any]:
    """A whole alertmanager.yml for an Alertmanager of Modelship's own: a root route (which may
    not match on anything) that drops what the Modelship route does not take."""
    fragment = alertmanager_yaml(r)
    return {
        "route": {"receiver": "null", "routes": [fragment["route"]]},
        "receivers": [*fragment["receivers"], {"name": "null"}],
    }


def _secret(ref: tuple[str, str]) -> dict[str, str]:
    return {"name": ref[0], "key": ref[1]}


def _people_spec(name: str, r: Routing, send_resolved: bool) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": name}
    if r.slack:
        receiver["slackConfigs"] = [{"channel": r.slack.channel, "apiURL": _secret(r.slack.secret or ("", "")), "sendResolved": send_resolved, "title": "{{ .CommonLabels.alertname }}", "text": _summary_text()}]
    if r.email:
        receiver["emailConfigs"] = [{"to": r.email.to, "sendResolved": send_resolved, "text": _summary_text()}]
    return receiver


def alertmanager_config_spec(r: Routing) -> dict[str, Any]:
    """The ``spec`` of a ``monitoring.coreos.com/v1alpha1`` AlertmanagerConfig."""
    if r.token_secret is None:
        raise ValueError("an AlertmanagerConfig reads the webhook token from a Secret: give token_secret")
    operator = {"url": r.webhook_url, "sendResolved": True, "maxAlerts": 50, "httpConfig": {"authorization": {"type": "Bearer", "credentials": _secret(r.token_secret)}}}
    return {
        "route": {
            "receiver": NOTIFY_RECEIVER,
            "groupBy": list(GROUP_BY),
            "matchers": [{"name": "alertname", "value": f"{ALERT_PREFIX}.*", "matchType": "=~"}],
            "groupWait": r.timing.group_wait,
            "groupInterval": r.timing.group_interval,
            "repeatInterval": r.timing.repeat_interval,
            "routes": [
                {"receiver": OPERATOR_RECEIVER, "matchers": [{"name": "alertname", "value": OPERATOR_ALERTS, "matchType": "=~"}], "continue": True},
                {"receiver": MILESTONE_RECEIVER, "matchers": [{"name": "alertname", "value": MILESTONE_ALERTS, "matchType": "=~"}]},
                {"receiver": NOTIFY_RECEIVER},
            ],
        },
        "receivers": [{"name": OPERATOR_RECEIVER, "webhookConfigs": [operator]}, _people_spec(NOTIFY_RECEIVER, r, True), _people_spec(MILESTONE_RECEIVER, r, False)],
    }


def _helm_literal(value: Any) -> Any:
    """Alertmanager's own templates, quoted so Helm's ``tpl`` leaves them to Alertmanager."""
    if isinstance(value, dict):
        return {k: _helm_literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_helm_literal(v) for v in value]
    if isinstance(value, str) and "{{" in value and not value.startswith("{{ .Values") and "include" not in value:
        return "{{`" + value + "`}}"
    return value


def chart_spec() -> dict[str, Any]:
    """The chart's AlertmanagerConfig spec: Helm expressions where the release decides; the
    template drops the Slack and e-mail configs that values do not enable."""
    values = ".Values.monitoring.alertmanagerConfig"
    return _helm_literal(alertmanager_config_spec(
        routing(
            webhook_url='{{ include "modelship.alertWebhookURL" . }}',
            # The Secret the operator mounts its token from (the chart's, or operator.webhook.existingSecret).
            token_secret=('{{ include "modelship.operator.webhookSecretName" . }}', "token"),
            slack=Slack(channel=f"{{{{ {values}.slack.channel }}}}", secret=(f"{{{{ {values}.slack.apiURLSecret.name }}}}", f"{{{{ {values}.slack.apiURLSecret.key }}}}")),
            email=Email(to=f"{{{{ {values}.email.to }}}}"),
            timing=Timing(f"{{{{ {values}.groupWait }}}}", f"{{{{ {values}.groupInterval }}}}", f"{{{{ {values}.repeatInterval }}}}"),
        )
    ))


CHART_FILE = generated.GeneratedFile("modelship monitoring alertmanager", "modelship.monitoring.alertmanager", CHART_OUTPUTS, chart_spec, width=1000)
