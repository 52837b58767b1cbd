"""Drift loop benchmark on the Go-built control plane (KWOK simulates every pod).

Prints:
  * drift injected → retraining Job created: a real ``modelship serve`` (a version trained
    here), a real Prometheus evaluating the generated rules (``for`` shortened to --drift-for)
    and a real Alertmanager (group_wait 1s) posting to the real operator's webhook; measured
    from the POST of shifted inputs to the Job on the API server, --samples times;
  * webhook throughput with --count watched ModelDeployments: new alerts/s (each a status
    write), re-sent alerts/s (a read, then dropped) and alerts/s in payloads of 50.

Nothing is asserted; the figures go to docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_driftloop.py [--count 200] [--samples 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "hack" / "test-cluster"), str(REPO / "tests" / "support"), str(REPO / "tests" / "serving")]

import servingkit  # noqa: E402
import testcluster  # noqa: E402
from resources import model_deployment  # noqa: E402
from servers import AlertmanagerServer, MlflowServer, OperatorProcess, PrometheusServer  # noqa: E402

from modelship.monitoring import alertmanager, rules  # noqa: E402
from modelship.monitoring import metrics as names  # noqa: E402

CRD = REPO / "manifests" / "crds" / "modelship.io_modeldeployments.yaml"
TOKEN = "bench-token-0123456789abcdef"
DRIFT = {"method": "psi", "threshold": 0.2, "driftShare": 0.5, "windowSize": 100, "minRows": 50, "interval": "1s"}


def resource(name: str, namespace: str, retrain: bool) -> dict:
    return model_deployment(name, namespace, rollout={"strategy": "immediate"}, monitoring={"drift": DRIFT, "retrainOnDrift": retrain, "cooldown": "1s"})


def alert(namespace: str, name: str, fingerprint: str) -> dict:
    labels = {"alertname": rules.DRIFT_ALERT, "namespace": namespace, names.LABEL_DEPLOYMENT: name, "model": f"{namespace}-{name}", "version": "1", "variant": "champion"}
    return {"status": "firing", "labels": labels, "annotations": {"drifted_features": "bmi=0.5"}, "startsAt": "2026-11-22T07:50:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}


def payload(alerts: list[dict]) -> bytes:
    return json.dumps({"version": "4", "groupKey": "bench", "status": "firing", "receiver": "modelship-operator", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "alerts": alerts}).encode()


def throughput(url: str, bodies: list[bytes], alerts_per_body: int, concurrency: int = 8) -> float:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        def send(body: bytes) -> None:
            answer = client.post(url, content=body, headers=headers)
            answer.raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, bodies))
        return len(bodies) * alerts_per_body / (time.perf_counter() - started)


def retraining_jobs(cluster, namespace: str, name: str) -> list[str]:
    items = cluster.kubectl_json("get", "jobs", "-n", namespace, "-l", f"modelship.io/deployment={name}")["items"]
    return [j["metadata"]["name"] for j in items if j["metadata"].get("annotations", {}).get("modelship.io/trigger") == "drift"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="Watched ModelDeployments in the throughput phase.")
    parser.add_argument("--samples", type=int, default=3, help="Drift injections timed end to end.")
    parser.add_argument("--drift-for", default="5s", help="The drift alert's `for` in this run.")
    parser.add_argument("--alerts", type=int, default=1000, help="New alerts posted in the throughput phase.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="modelship-bench-driftloop-"))
    token_file = work / "token"
    token_file.write_text(TOKEN)
    cluster = testcluster.new_test_cluster()
    mlflow = MlflowServer(work / "mlflow")
    parts: list = []
    try:
        cluster.start()
        cluster.apply(CRD)
        cluster.wait_until("the CRD", lambda: "Established" in json.dumps(cluster.kubectl_json("get", "crd", "modeldeployments.modelship.io").get("status", {})), timeout=60)
        namespace = cluster.create_namespace("bench")
        mlflow.start()
        parts.append(mlflow)
        env = {"MLFLOW_TRACKING_URI": mlflow.url, "MODELSHIP_RESYNC_INTERVAL": "600", "MODELSHIP_ALERT_TOKEN_FILE": str(token_file), "MODELSHIP_MAX_CONCURRENT_RETRAINS": "1000"}
        operator = OperatorProcess(cluster.kubeconfig, namespace, env, work / "operator.log")
        webhook = f"http://127.0.0.1:{operator.port}/alerts"
        am = AlertmanagerServer(work / "alertmanager", alertmanager.alertmanager_file(alertmanager.routing(webhook, token_file=str(token_file), timing=alertmanager.Timing("1s", "2s", "1h")))).start()
        parts.append(am)
        operator.start()
        parts.append(operator)

        # --- drift injected → retraining Job created ------------------------------------
        trained = servingkit.train(work / "train", mlflow.url, "bench-diabetes", {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}, "training": {"framework": "sklearn", "estimator": "ridge"}}, local_artifacts=False)
        rule_file = work / "rules.yaml"
        rule_file.write_text(yaml.safe_dump(rules.rule_groups(drift_for=args.drift_for, records_interval="1s"), sort_keys=False))
        from sklearn.datasets import load_diabetes

        rows = load_diabetes(as_frame=True).frame.drop(columns=["target"])
        timings = []
        for sample in range(args.samples):
            name = f"drift-{sample}"
            cluster.kubectl("apply", "-f", "-", input=json.dumps(resource(name, namespace, retrain=True)))
            cluster.wait_until("the spec Job to finish", lambda: (cluster.kubectl_json("get", "mdep", name, "-n", namespace).get("status", {}).get("lastTraining") or {}).get("finishedAt"), timeout=120)
            spec = resource(name, namespace, True)["spec"]
            with servingkit.serve(work / f"serve-{sample}", "bench-diabetes", trained["version"], mlflow.url, work / "cache", spec=spec) as server:
                server.wait_ready()
                labels = {"namespace": namespace, "pod": f"{name}-v1-a", names.LABEL_DEPLOYMENT: name}
                prometheus = PrometheusServer(work / f"prometheus-{sample}", [f"127.0.0.1:{server.port}"], [rule_file], labels, alertmanagers=[am.address]).start()
                try:
                    server.client.post("/predict", json=rows.sample(100, random_state=sample).to_dict(orient="records")).raise_for_status()
                    time.sleep(3)
                    injected = time.perf_counter()
                    server.client.post("/predict", json=(rows.sample(100, random_state=100 + sample) * 3 + 0.2).to_dict(orient="records")).raise_for_status()
                    cluster.wait_until("the drift retraining Job", lambda: retraining_jobs(cluster, namespace, name), timeout=180, interval=0.2)
                    timings.append(time.perf_counter() - injected)
                    print(f"drift injected → retraining Job created: {timings[-1]:.1f}s (for {args.drift_for}, group_wait 1s, drift interval 1s)", flush=True)
                finally:
                    prometheus.stop()
        if timings:
            print(f"drift → Job: median {statistics.median(timings):.1f}s over {len(timings)}")

        # --- webhook throughput with --count watched resources ----------------------------
        bulk = [f"md-{i:03d}" for i in range(args.count)]
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(resource(n, namespace, retrain=False)) for n in bulk), timeout=600)
        cluster.wait_until("every resource reconciled", lambda: sum(1 for i in cluster.kubectl_json("get", "mdep", "-n", namespace)["items"] if i.get("status", {}).get("observedGeneration")) >= args.count + args.samples, timeout=600, interval=2)
        fresh = [payload([alert(namespace, bulk[i % args.count], f"fp-{i}")]) for i in range(args.alerts)]
        print(f"webhook, {args.count} watched resources, new alerts (one status write each): {throughput(webhook, fresh, 1):.0f} alerts/s")
        print(f"webhook, the same alerts re-sent (dropped after one read): {throughput(webhook, fresh, 1):.0f} alerts/s")
        grouped = [payload([alert(namespace, bulk[(i * 50 + j) % args.count], f"grp-{i}-{j}") for j in range(50)]) for i in range(max(args.alerts // 50, 1))]
        print(f"webhook, new alerts in payloads of 50: {throughput(webhook, grouped, 50):.0f} alerts/s")
        return 0
    finally:
        for part in reversed(parts):
            part.stop()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
