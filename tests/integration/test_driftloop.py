"""The drift loop end to end with real parts: a real ``modelship serve`` of the version the
operator trained, scraped by a real Prometheus evaluating the generated rules (a short ``for``),
a real Alertmanager routed by the generated config, posting to the real operator's webhook with
the bearer token; the operator runs against a real API server and starts real retraining Jobs
(training pods run as local processes, serving pods are KWOK's).

One resource walks through: drift → exactly one retraining (despite an alert storm and
Alertmanager's repeats) → the retrained version is champion; a second alert inside the cooldown
→ none, with an Event; forged calls → 401 and nothing changes; after the cooldown an alert is
accepted, the operator is killed at once, and the retraining still happens once after the
restart. A second test runs a schedule of every minute across a restart. A third posts a
ModelshipQualityDrop alert into the real Alertmanager: one retraining with trigger quality, the
drift status untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from modelship.monitoring import alertmanager, rules
from modelship.monitoring import metrics as names
from modelship.operator.conditions import condition
from modelship.operator.retrain import parse_time
from resources import model_deployment
from servers import AlertmanagerServer, OperatorProcess, PrometheusServer
from test_operator import CRD, mlflow_server, service_account_kubeconfig  # noqa: F401  (fixture)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import servingkit  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "diabetes"
TOKEN = "s3cr3t-webhook-token-0123456789abcdef"
COOLDOWN_SECONDS = 75
DRIFT = {"method": "psi", "threshold": 0.2, "driftShare": 0.5, "windowSize": 100, "minRows": 50, "interval": "1s"}


def write_dataset(path: Path, seed: int) -> None:
    """A different sample of scikit-learn's diabetes data each time: different bytes, same shape."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    frame.sample(frac=0.9, random_state=seed).to_csv(path, index=False)


def resource(namespace: str, data: Path, **monitoring) -> dict:
    return model_deployment(
        NAME, namespace, dataset={"uri": data.as_uri(), "target": "target"},
        training={"framework": "sklearn", "estimator": "ridge"}, serving={"replicas": 1}, rollout={"strategy": "immediate"},
        monitoring={"drift": DRIFT, "retrainOnDrift": True, "cooldown": f"{COOLDOWN_SECONDS}s", **monitoring},
    )


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def start_operator(cluster, namespace, mlflow_server, tmp_path, token_file) -> OperatorProcess:  # noqa: F811
    cluster.apply(CRD)
    # (`kubectl wait` right after the apply can fail on a CRD without conditions yet.)
    cluster.wait_until("the CRD to be established", lambda: any(
        c["type"] == "Established" and c["status"] == "True"
        for c in cluster.kubectl_json("get", "crd", "modeldeployments.modelship.io").get("status", {}).get("conditions") or []
    ), timeout=60)
    kubeconfig = service_account_kubeconfig(cluster, namespace, tmp_path)
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MODELSHIP_TRAINING_POD_LABELS": json.dumps({"modelship.io/test-pod-runner": "local"}),
        "MODELSHIP_RESYNC_INTERVAL": "15",
        "MODELSHIP_ALERT_TOKEN_FILE": str(token_file),
    }
    return OperatorProcess(kubeconfig, namespace, env, tmp_path / "operator.log")


def status_of(cluster, namespace, name=NAME) -> dict:
    return cluster.kubectl_json("get", "mdep", name, "-n", namespace).get("status", {})


def jobs(cluster, namespace, trigger: str | None = None) -> list[dict]:
    items = cluster.kubectl_json("get", "jobs", "-n", namespace, "-l", f"modelship.io/deployment={NAME}")["items"]
    found = [j for j in items if trigger is None or j["metadata"].get("annotations", {}).get("modelship.io/trigger") == trigger]
    return sorted(found, key=lambda j: j["metadata"]["creationTimestamp"])


def events(cluster, namespace, reason: str) -> list[dict]:
    items = cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={NAME},reason={reason}")["items"]
    return items


def wait_champion(cluster, namespace, version: str, timeout: float = 300) -> dict:
    return cluster.wait_until(
        f"version {version} to be champion",
        lambda: (s := status_of(cluster, namespace)).get("championVersion") == version and s.get("phase") == "Serving" and s,
        timeout=timeout,
        interval=1,
    )


def payload(alerts: list[dict]) -> dict:
    """An Alertmanager webhook body (version 4) around ``alerts`` as its API v2 lists them."""
    return {
        "version": "4", "groupKey": "{}:{alertname=\"ModelshipDataDrift\"}", "truncatedAlerts": 0, "status": "firing",
        "receiver": alertmanager.OPERATOR_RECEIVER, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://127.0.0.1",
        "alerts": [
            {"status": "firing", "labels": a["labels"], "annotations": a["annotations"], "startsAt": a["startsAt"], "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": a["fingerprint"]}
            for a in alerts
        ],
    }


def post(operator: OperatorProcess, body: dict | bytes, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"http://127.0.0.1:{operator.port}/alerts", content=content, headers=headers, timeout=30)


def test_drift_alert_retrains_once_through_alertmanager(cluster, namespace, mlflow_server, pod_runner, tmp_path, token_file):  # noqa: F811
    from mlflow import MlflowClient

    data = tmp_path / "diabetes.csv"
    write_dataset(data, seed=1)
    operator = start_operator(cluster, namespace, mlflow_server, tmp_path, token_file)
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules.rule_groups(drift_for="3s", records_interval="1s"), sort_keys=False))
    routing = alertmanager.routing(f"http://127.0.0.1:{operator.port}/alerts", token_file=str(token_file), timing=alertmanager.Timing("1s", "2s", "4s"))
    am = AlertmanagerServer(tmp_path / "alertmanager", alertmanager.alertmanager_file(routing)).start()
    operator.start()
    stack = [am, operator]
    try:
        spec = resource(namespace, data)
        cluster.apply(yaml.safe_dump(spec))
        wait_champion(cluster, namespace, "1", timeout=300)
        assert condition(status_of(cluster, namespace)["conditions"], "DriftDetected")["status"] == "False"
        model_name = f"{namespace}-{NAME}"

        # The served version, its series labelled as the chart's PodMonitor labels them.
        with servingkit.serve(tmp_path / "serve", model_name, "1", mlflow_server.url, tmp_path / "cache", spec=spec["spec"]) as server:
            server.wait_ready()
            labels = {"namespace": namespace, "pod": f"{NAME}-v1-abc", names.LABEL_DEPLOYMENT: NAME}
            prometheus = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{server.port}"], [rule_file], labels, alertmanagers=[am.address]).start()
            stack.append(prometheus)
            rows = pd.read_csv(data).drop(columns=["target"])
            assert server.client.post("/predict", json=rows.sample(100, random_state=3).to_dict(orient="records")).status_code == 200
            time.sleep(3)
            assert jobs(cluster, namespace, "drift") == [], "calm inputs retrained"
            write_dataset(data, seed=2)  # the world changed: new data for the retraining
            injected = time.monotonic()
            shifted = rows.sample(100, random_state=4) * 3 + 0.2
            assert server.client.post("/predict", json=shifted.to_dict(orient="records")).status_code == 200

            # 1. Prometheus fires, Alertmanager posts, the operator starts exactly one retraining.
            first = cluster.wait_until("a drift retraining Job", lambda: jobs(cluster, namespace, "drift"), timeout=120, interval=0.5)
            print(f"\ndrift injected → retraining Job created: {time.monotonic() - injected:.1f}s (for 3s, group_wait 1s)")
            assert len(first) == 1
            job = first[0]
            assert job["metadata"]["name"] != jobs(cluster, namespace, "spec")[0]["metadata"]["name"]
            env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env["MODELSHIP_TRIGGER"] == "drift" and "ModelshipDataDrift on version 1" in env["MODELSHIP_RETRAIN_REASON"]
            status = status_of(cluster, namespace)
            drift = condition(status["conditions"], "DriftDetected")
            assert drift["status"] == "True" and drift["reason"] == "DriftAlertFiring"
            drifted = status["drift"]["features"]
            assert drifted and all("=" in item for item in drifted.split(", ")), drifted
            assert status["lastTraining"]["trigger"] == "drift"
            assert "True" in cluster.kubectl("get", "mdep", NAME, "-n", namespace).stdout.splitlines()[1]  # the Drift column

            # 2. An alert storm: the same alert 50 times, plus Alertmanager's own repeats.
            firing = [a for a in am.alerts() if a["labels"]["alertname"] == rules.DRIFT_ALERT]
            assert len(firing) == 1 and firing[0]["labels"][names.LABEL_DEPLOYMENT] == NAME
            storm = payload(firing)
            for _ in range(50):
                assert post(operator, storm).status_code == 200
            # 3. Another alert inside the cooldown (another version's, say): none, and an Event says why.
            other = {**firing[0], "fingerprint": "second-alert", "labels": {**firing[0]["labels"], "version": "9"}}
            assert post(operator, payload([other])).json() == {"alerts": {"recorded": 1}}
            skipped = cluster.wait_until("the cooldown Event", lambda: [e for e in events(cluster, namespace, "RetrainSkipped") if "cooldown" in e["message"]], timeout=30)
            assert "second-alert" not in json.dumps(skipped) and "version 9" in skipped[0]["message"]

            # 4. The retrained version goes through the rollout; still exactly one retraining.
            status = wait_champion(cluster, namespace, "2", timeout=300)
            print(f"drift injected → retrained version 2 champion (rollout immediate): {time.monotonic() - injected:.1f}s")
            time.sleep(8)  # two more Alertmanager repeats
            assert len(jobs(cluster, namespace, "drift")) == 1
            assert status["lastTraining"]["trigger"] == "drift" and status["lastTraining"]["modelVersion"] == "2"
            version = MlflowClient(tracking_uri=mlflow_server.url).get_model_version(model_name, "2")
            assert version.tags["modelship.io/trigger"] == "drift" and "ModelshipDataDrift" in version.tags["modelship.io/retrain-reason"]
            metrics = operator.metrics()
            assert 'modelship_operator_alerts_total{result="duplicate"}' in metrics

            # 5. Forged calls: no token, a wrong one, one of another length → 401, nothing changes.
            before = status_of(cluster, namespace).get("retrain")
            forged = payload([{**firing[0], "fingerprint": "forged"}])
            for token in (None, "x" * len(TOKEN), "short", TOKEN + "x"):
                answer = post(operator, forged, token=token)
                assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", (token, answer.text)
            assert httpx.post(f"http://127.0.0.1:{operator.port}/alerts", json=forged, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
            # Malformed and oversized bodies, with the token: 400 and 413.
            assert post(operator, b"{not json").status_code == 400
            assert post(operator, {"version": "3", "alerts": []}).status_code == 400
            assert post(operator, b" " * ((1 << 20) + 10)).status_code == 413
            # An alert for a resource that does not exist, or another namespace: accepted, counted.
            ghost = {**firing[0], "fingerprint": "ghost", "labels": {**firing[0]["labels"], names.LABEL_DEPLOYMENT: "ghost"}}
            elsewhere = {**firing[0], "fingerprint": "elsewhere", "labels": {**firing[0]["labels"], "namespace": "kube-system"}}
            assert post(operator, payload([ghost, elsewhere])).json() == {"alerts": {"unknown_resource": 1, "unwatched": 1}}
            time.sleep(2)
            assert status_of(cluster, namespace).get("retrain") == before
            assert len(jobs(cluster, namespace, "drift")) == 1
            assert TOKEN not in operator.log_path.read_text()

            # 6. After the cooldown an alert is accepted and the operator dies at once: the
            #    request is on the resource, and the retraining happens once after the restart.
            last = parse_time(status_of(cluster, namespace)["retrain"]["lastDriftRetrainAt"])
            cluster.wait_until("the cooldown to pass", lambda: dt.datetime.now(dt.timezone.utc) > last + dt.timedelta(seconds=COOLDOWN_SECONDS + 1), timeout=COOLDOWN_SECONDS + 30)
            write_dataset(data, seed=3)
            third = {**firing[0], "fingerprint": "third-alert", "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            assert post(operator, payload([third])).json() == {"alerts": {"recorded": 1}}
            operator.kill()
            recorded = status_of(cluster, namespace)["retrain"]
            print(f"operator killed; request pending: {bool(recorded.get('pending'))}, drift Jobs: {len(jobs(cluster, namespace, 'drift'))}")
            assert "third-alert@" + third["startsAt"] in recorded["handledAlerts"]
            operator.start()
            cluster.wait_until("the second drift retraining", lambda: len(jobs(cluster, namespace, "drift")) == 2, timeout=120)
            wait_champion(cluster, namespace, "3", timeout=300)
            time.sleep(6)
            assert len(jobs(cluster, namespace, "drift")) == 2

            # 7. The alert resolves: DriftDetected goes False, nothing is retrained.
            resolved = payload([{**third}])
            resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
            resolved["alerts"][0]["endsAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            assert post(operator, resolved).json() == {"alerts": {"recorded": 1}}
            cleared = cluster.wait_until("DriftDetected to clear", lambda: condition(status_of(cluster, namespace)["conditions"], "DriftDetected")["status"] == "False", timeout=30)
            assert cleared and condition(status_of(cluster, namespace)["conditions"], "DriftDetected")["reason"] == "DriftResolved"
            assert len(jobs(cluster, namespace, "drift")) == 2
    finally:
        for part in reversed(stack):
            part.stop()
        print(f"operator log: {operator.log_path}; alertmanager log: {am.log_path}")


def test_a_schedule_retrains_once_per_slot_across_a_restart(cluster, namespace, mlflow_server, pod_runner, tmp_path, token_file):  # noqa: F811
    data = tmp_path / "diabetes.csv"
    write_dataset(data, seed=1)
    operator = start_operator(cluster, namespace, mlflow_server, tmp_path, token_file).start()
    try:
        cluster.apply(yaml.safe_dump(resource(namespace, data, retrainOnDrift=False)))
        wait_champion(cluster, namespace, "1", timeout=300)
        # `modelship retrain NAME`: a manual retraining, forced (the data did not change).
        asked = subprocess.run([str(Path(sys.executable).parent / "modelship"), "retrain", NAME, "-n", namespace], capture_output=True, text=True, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
        assert asked.returncode == 0 and f"modeldeployment {namespace}/{NAME}: retraining requested" in asked.stdout, asked.stdout + asked.stderr
        manual = cluster.wait_until("the manual retraining", lambda: jobs(cluster, namespace, "manual"), timeout=30)
        env = {e["name"]: e.get("value") for e in manual[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MODELSHIP_TRIGGER"] == "manual" and env["MODELSHIP_FORCE"] == "true"
        wait_champion(cluster, namespace, "2", timeout=300)
        missing = subprocess.run([str(Path(sys.executable).parent / "modelship"), "retrain", "nope", "-n", namespace], capture_output=True, text=True, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
        assert missing.returncode == 1 and f"no ModelDeployment nope in namespace {namespace}" in missing.stderr
        # A schedule is not training-relevant spec: adding it retrains nothing by itself.
        cluster.kubectl("patch", "mdep", NAME, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"training": {"schedule": "* * * * *"}}}))
        slot = cluster.wait_until("the next run in status", lambda: (status_of(cluster, namespace).get("retrain") or {}).get("nextScheduledAt"), timeout=30)
        job = cluster.wait_until("the scheduled retraining", lambda: jobs(cluster, namespace, "schedule"), timeout=150, interval=0.5)[0]
        started = job["metadata"]["creationTimestamp"]
        print(f"\nslot {slot}: Job created at {started}")
        assert started >= slot and _seconds(slot, started) < 20, "the scheduled retraining was late"
        status = status_of(cluster, namespace)
        assert status["retrain"]["lastScheduleSlot"] == slot and status["retrain"]["nextScheduledAt"] > slot
        # A restart inside the same slot starts nothing new.
        operator.kill()
        operator.start()
        time.sleep(5)
        assert len(jobs(cluster, namespace, "schedule")) == 1
        # The same data bytes as the champion's: the scheduled Job trains nothing, and says so.
        done = cluster.wait_until("the scheduled Job's outcome", lambda: (s := status_of(cluster, namespace))["lastTraining"].get("finishedAt") and s, timeout=120)
        assert condition(done["conditions"], "Trained")["reason"] == "DataUnchanged" and done["championVersion"] == "2"
        assert [e for e in events(cluster, namespace, "RetrainSkipped") if "data bytes" in e["message"]]
        # The next slot retrains again, once.
        next_slot = done["retrain"]["nextScheduledAt"]
        cluster.wait_until("the next slot's retraining", lambda: len(jobs(cluster, namespace, "schedule")) == 2, timeout=150, interval=1)
        time.sleep(3)
        assert len(jobs(cluster, namespace, "schedule")) == 2 and status_of(cluster, namespace)["retrain"]["lastScheduleSlot"] == next_slot
    finally:
        operator.stop()
        print(f"operator log: {operator.log_path}")


def test_quality_drop_alert_retrains_once_through_alertmanager(cluster, namespace, mlflow_server, pod_runner, tmp_path, token_file):  # noqa: F811
    data = tmp_path / "diabetes.csv"
    write_dataset(data, seed=1)
    operator = start_operator(cluster, namespace, mlflow_server, tmp_path, token_file)
    routing = alertmanager.routing(f"http://127.0.0.1:{operator.port}/alerts", token_file=str(token_file), timing=alertmanager.Timing("1s", "2s", "4s"))
    am = AlertmanagerServer(tmp_path / "alertmanager", alertmanager.alertmanager_file(routing)).start()
    operator.start()
    try:
        feedback = {"enabled": True, "retrainOnQualityDrop": True, "qualityThreshold": {"metric": "mae", "threshold": 40}}
        cluster.apply(yaml.safe_dump(resource(namespace, data, retrainOnDrift=False, feedback=feedback)))
        wait_champion(cluster, namespace, "1", timeout=300)
        write_dataset(data, seed=2)  # new data for the retraining (the same bytes would train nothing)

        # The alert as the generated rule raises it: its labels, the series' labels, its summary.
        rule = next(r for g in rules.rule_groups()["groups"] for r in g["rules"] if r.get("alert") == rules.QUALITY_DROP_ALERT)
        labels = {
            "alertname": rules.QUALITY_DROP_ALERT, **rule["labels"], "namespace": namespace, names.LABEL_DEPLOYMENT: NAME,
            "model": f"{namespace}-{NAME}", names.LABEL_VERSION: "1", "variant": "champion", names.LABEL_METRIC: "mae",
        }
        alert = {"labels": labels, "annotations": {"summary": f"Live mae of {namespace}/{NAME} is 61.2, past its threshold"}, "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        posted = time.monotonic()
        for _ in range(3):  # Prometheus re-sends a firing alert each evaluation
            answer = httpx.post(f"{am.url}/api/v2/alerts", json=[alert], timeout=10)
            assert answer.status_code == 200, answer.text

        found = cluster.wait_until("a quality retraining Job", lambda: jobs(cluster, namespace, "quality"), timeout=60, interval=0.5)
        print(f"\nquality alert posted to Alertmanager → retraining Job created: {time.monotonic() - posted:.1f}s")
        env = {e["name"]: e.get("value") for e in found[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["MODELSHIP_TRIGGER"] == "quality" and "ModelshipQualityDrop on version 1" in env["MODELSHIP_RETRAIN_REASON"] and "61.2" in env["MODELSHIP_RETRAIN_REASON"]
        status = status_of(cluster, namespace)
        assert status["lastTraining"]["trigger"] == "quality"
        # A quality drop is not drift: DriftDetected and status.drift stay as they were.
        assert condition(status["conditions"], "DriftDetected")["reason"] == "NoDriftAlert" and not status.get("drift")
        assert [e for e in events(cluster, namespace, "RetrainStarted") if e["message"].startswith("quality retraining started")]

        status = wait_champion(cluster, namespace, "2", timeout=300)
        assert status["lastTraining"]["trigger"] == "quality" and status["lastTraining"]["modelVersion"] == "2"
        # Alertmanager's repeats (repeat_interval 4s) carry the same fingerprint@startsAt: dropped.
        time.sleep(9)
        assert len(jobs(cluster, namespace, "quality")) == 1 and jobs(cluster, namespace, "drift") == []
        assert 'modelship_operator_alerts_total{result="duplicate"}' in operator.metrics()
        # Another quality alert (another version's) inside the cooldown: none, and an Event says why.
        other = {**alert, "labels": {**labels, names.LABEL_VERSION: "9"}}
        assert httpx.post(f"{am.url}/api/v2/alerts", json=[other], timeout=10).status_code == 200
        skipped = cluster.wait_until("the cooldown Event", lambda: [e for e in events(cluster, namespace, "RetrainSkipped") if "cooldown" in e["message"]], timeout=30)
        assert "ModelshipQualityDrop on version 9" in skipped[0]["message"]
        assert len(jobs(cluster, namespace, "quality")) == 1
    finally:
        operator.stop()
        am.stop()
        print(f"operator log: {operator.log_path}; alertmanager log: {am.log_path}")


def _seconds(start: str, end: str) -> float:
    return (parse_time(end) - parse_time(start)).total_seconds()
