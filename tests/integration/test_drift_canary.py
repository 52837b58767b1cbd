"""Drift to canary in one run, and people told of each step, with real parts: a real Prometheus
scrapes real ``modelship serve`` processes of each version (labelled as the chart's PodMonitor
labels them) and the real operator's /metrics (``honor_labels``, as the chart's ServiceMonitor),
and evaluates the generated rules (a short drift ``for``); a real Alertmanager, routed by the
generated config with the optional Slack and e-mail receivers, posts drift to the operator's
webhook and notifications to a loopback Slack-compatible endpoint and a loopback SMTP server.

Shifted inputs → ModelshipDataDrift → exactly one retraining Job → its version goes through a
canary judged on the live metrics of its model server → promoted → ``modelship rollback``. Slack
and e-mail receive exactly one notification of each milestone (the first version's promotion,
the retraining, the promotion, the rollback) naming the resource and the version; the operator's
webhook receives none of them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from integration.test_driftloop import DRIFT, TOKEN, events, jobs, start_operator, status_of, token_file, wait_champion, write_dataset  # noqa: F401  (token_file is a fixture)
from integration.test_operator import mlflow_server  # noqa: F401  (a fixture)
from integration.test_rollout import Fleet, TrafficDriver, modelship, route_weights
from modelship.api import names
from modelship.monitoring import alertmanager, rules
from modelship.operator.conditions import condition
from resources import model_deployment
from servers import AlertmanagerServer, PrometheusServer, SmtpSink, WebhookSink

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "diabetes"  # test_driftloop's helpers (jobs, events, status_of) look this one up
STEPS = [{"weight": 50, "pause": "4s"}, {"weight": 100, "pause": "4s"}]


def resource(namespace: str, data: Path) -> dict:
    return model_deployment(
        NAME, namespace, dataset={"uri": data.as_uri(), "target": "target"},
        training={"framework": "sklearn", "estimator": "ridge"}, serving={"replicas": 1},
        rollout={
            "strategy": "canary",
            "canary": {"steps": STEPS},
            "analysis": {"maxErrorRate": 0.05, "maxLatencyP95Ms": 1000, "minRequests": 5, "interval": "3s", "failureThreshold": 2, "inconclusiveTimeout": "300s"},
            "rollbackWindow": "10m",
        },
        # A long cooldown: whatever else fires meanwhile, one retraining.
        monitoring={"drift": DRIFT, "retrainOnDrift": True, "cooldown": "30m"},
    )


def slack_texts(sink: WebhookSink) -> dict[str, list[str]]:
    """alertname (the message title) → the texts of the messages posted to the Slack endpoint."""
    found: dict[str, list[str]] = {}
    for post in list(sink.received):
        for attachment in post["body"].get("attachments") or []:
            found.setdefault(attachment["title"], []).append(attachment["text"].strip())
    return found


def test_drift_retrains_once_then_canaries_and_people_hear_of_each_step(cluster, namespace, mlflow_server, pod_runner, tmp_path, token_file):  # noqa: F811
    from mlflow import MlflowClient

    data = tmp_path / "diabetes.csv"
    write_dataset(data, seed=1)
    where = f"{namespace}/{NAME}"
    model_name = f"{namespace}-{NAME}"
    slack, smtp = WebhookSink().start(), SmtpSink().start()
    stack: list = [slack, smtp]
    operator = start_operator(cluster, namespace, mlflow_server, tmp_path, token_file)
    slack_url_file = tmp_path / "slack-api-url"
    slack_url_file.write_text(slack.url)
    routing = alertmanager.routing(
        f"http://127.0.0.1:{operator.port}/alerts", token_file=str(token_file),
        slack=alertmanager.Slack("#ml-alerts", api_url_file=str(slack_url_file)), email=alertmanager.Email("ml-team@example.com"),
        # Short waits; the repeat interval is the chart's, longer than the notification window.
        timing=alertmanager.Timing("1s", "2s", "1h"),
    )
    am_config = alertmanager.alertmanager_file(routing)
    am_config["global"] = {"smtp_smarthost": smtp.address, "smtp_from": "alertmanager@example.com", "smtp_require_tls": False}
    am = AlertmanagerServer(tmp_path / "alertmanager", am_config).start()
    stack.append(am)
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules.rule_groups(drift_for="3s", records_interval="1s"), sort_keys=False))
    prometheus = PrometheusServer(tmp_path / "prometheus", [], [rule_file], {}, alertmanagers=[am.address]).start()
    stack.append(prometheus)
    operator.env.update({names.ENV_PROMETHEUS_URL: prometheus.url, "MODELSHIP_RETAIN_ROLLED_BACK_SECONDS": "30"})
    operator.start()
    stack.append(operator)
    prometheus.add_group([f"127.0.0.1:{operator.port}"], {"namespace": "modelship-system", "pod": "modelship-operator"}, honor_labels=True)
    fleet = Fleet(tmp_path / "fleet", mlflow_server.url, model_name, namespace, prometheus, name=NAME)
    stack.append(fleet)
    began = time.monotonic()
    try:
        spec = resource(namespace, data)
        cluster.apply(yaml.safe_dump(spec))
        wait_champion(cluster, namespace, "1", timeout=300)
        print(f"\nfirst version champion: {time.monotonic() - began:.1f}s after the apply")
        v1 = fleet.serve("1", "champion", spec=spec["spec"])
        rows = pd.read_csv(data).drop(columns=["target"])
        calm = rows.sample(100, random_state=3).to_dict(orient="records")
        assert v1.client.post("/predict", json=calm).status_code == 200
        time.sleep(3)
        assert jobs(cluster, namespace, "drift") == [], "calm inputs retrained"

        # 1. Shifted inputs: Prometheus fires, Alertmanager posts, one retraining Job.
        write_dataset(data, seed=2)  # the world changed: new data for the retraining
        injected = time.monotonic()
        assert v1.client.post("/predict", json=(rows.sample(100, random_state=4) * 3 + 0.2).to_dict(orient="records")).status_code == 200
        (job,) = cluster.wait_until("a drift retraining Job", lambda: jobs(cluster, namespace, "drift"), timeout=120, interval=0.5)
        print(f"drift injected → retraining Job: {time.monotonic() - injected:.1f}s")

        # 2. Its version rolls out as a canary, judged on the live metrics of both servers.
        with TrafficDriver(lambda: route_weights(cluster, namespace, NAME), fleet.urls, records=calm) as traffic:
            cluster.wait_until("version 2 to be trained", lambda: (status_of(cluster, namespace).get("lastTraining") or {}).get("modelVersion") == "2", timeout=240, interval=0.5)
            print(f"drift injected → version 2 registered: {time.monotonic() - injected:.1f}s")
            fleet.serve("2", "canary", spec=spec["spec"])
            promoted = wait_champion(cluster, namespace, "2", timeout=180)
            print(f"drift injected → retrained version 2 promoted through its canary: {time.monotonic() - injected:.1f}s")
        rollout = promoted["rollout"]
        assert rollout["phase"] == "Promoted" and rollout["previousChampion"] == "1" and rollout["failedChecks"] == 0
        assert {c["name"]: c["verdict"] for c in rollout["checks"]} == {"requests": "Successful", "errorRate": "Successful", "latencyP95": "Successful"}
        assert promoted["lastTraining"]["trigger"] == "drift" and promoted["lastTraining"]["job"] == job["metadata"]["name"]
        shares = [w.get(f"{NAME}-v2", 0) for w in traffic.seen]
        assert 50 in shares and set(shares) <= {0, 50, 100}, traffic.seen  # through the step, not straight to 100
        assert traffic.sent.get(f"{NAME}-v2", 0) >= 5
        steps = [e["message"] for e in events(cluster, namespace, "CanaryStep")]
        assert any("version 2 takes 50%" in m for m in steps) and any("version 2 takes 100%" in m for m in steps), steps
        assert MlflowClient(tracking_uri=mlflow_server.url).get_model_version_by_alias(model_name, "champion").version == "2"

        # 3. A person rolls the promotion back.
        rolled = modelship(cluster, "rollback", NAME, "-n", namespace)
        assert rolled.returncode == 0, rolled.stderr
        back = wait_champion(cluster, namespace, "1", timeout=60)
        assert condition(back["conditions"], "Promoted")["reason"] == "RolledBack"
        assert len(jobs(cluster, namespace, "drift")) == 1

        # 4. One notification of each milestone, on Slack and by e-mail, naming resource and version.
        expected = {
            rules.PROMOTED_ALERT: [f"Version 1 of {where} is champion", f"Version 2 of {where} is champion, replacing version 1"],
            rules.RETRAIN_STARTED_ALERT: [f"Retraining of {where} started (trigger drift, job {job['metadata']['name']}); version 1 serves meanwhile"],
            rules.ROLLED_BACK_ALERT: [f"Version 2 of {where} was rolled back (RolledBack); version 1 serves"],
        }
        total = sum(len(texts) for texts in expected.values())

        def milestones_on_slack() -> dict[str, list[str]]:
            found = {alert: sorted(texts) for alert, texts in slack_texts(slack).items() if alert in rules.NOTIFICATION_ALERTS}
            return found if sum(len(texts) for texts in found.values()) >= total else {}

        cluster.wait_until("every milestone on Slack", milestones_on_slack, timeout=60, interval=1)
        mails = lambda: [text.strip() for text in smtp.texts() if any(text.strip() in texts for texts in expected.values())]  # noqa: E731
        cluster.wait_until("every milestone by e-mail", lambda: len(mails()) >= total, timeout=60, interval=1)
        time.sleep(6)  # three group intervals: nothing is repeated
        assert milestones_on_slack() == {alert: sorted(texts) for alert, texts in expected.items()}
        assert sorted(mails()) == sorted(text for texts in expected.values() for text in texts)
        assert {post["body"]["channel"] for post in slack.received} == {"#ml-alerts"}
        print(f"rollback → its notification on Slack and by e-mail; the whole run {time.monotonic() - began:.1f}s")
        # The drift alert reached people too (a condition: its Slack receiver sends "resolved" later).
        assert any(text.startswith(f"Input drift on {where} (model {model_name} version 1") for text in slack_texts(slack).get(rules.DRIFT_ALERT, []))

        # 5. The operator's webhook received drift only: Alertmanager routed the milestones to people.
        for alert in am.alerts():
            receivers = sorted(r["name"] for r in alert["receivers"])
            if alert["labels"]["alertname"] in rules.NOTIFICATION_ALERTS:
                assert receivers == [alertmanager.MILESTONE_RECEIVER], alert
        metrics = operator.metrics()
        assert 'modelship_operator_alerts_total{result="recorded"}' in metrics
        assert 'result="ignored"' not in metrics and 'result="unrouted"' not in metrics, [line for line in metrics.splitlines() if "alerts_total" in line]
        assert TOKEN not in operator.log_path.read_text()
    finally:
        for part in reversed(stack):
            part.stop()
        print(f"operator log: {operator.log_path}; alertmanager log: {am.log_path}; slack posts: {len(slack.received)}; e-mails: {len(smtp.messages)}")
        print(json.dumps(slack_texts(slack), indent=1))
