"""An A/B test judged on live quality, for real: the operator (with the chart's RBAC) trains two
versions of an iris classifier in real training pods against a real MLflow and runs them as
variants ``a`` (the champion) and ``b`` (the challenger). The serving pods are simulated by KWOK,
so the test runs a real ``modelship serve`` per variant with the environment the operator gave
its Deployment (the spec and the prediction-store DSN from the Secret it names), writing to a
real PostgreSQL; a real Prometheus scrapes them with the labels a PodMonitor gives.

The test sends predictions to each variant and ground truth through ``POST /feedback``: first too
few labels (the status says so and judges nothing), then enough that ``b`` is clearly the more
accurate. It checks the labelled counts and accuracies in ``status.rollout.variants`` against
what it sent, the sequential test's always-valid p-value against one computed here (and that it
is more conservative than the fixed-horizon z-test's, from SciPy), the verdict, the Event,
``modelship status``, and that nothing is promoted until a person says so."""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import yaml
from resources import model_deployment
from scipy import stats
from serving import servingkit
from servers import OperatorProcess, PostgresServer, PrometheusServer, wait_until

from integration.test_operator import CRD, mlflow_server, service_account_kubeconfig  # noqa: F401  (mlflow_server is a fixture)
from integration.test_rollout import modelship
from modelship.api import names
from modelship.monitoring import metrics
from modelship.training.datasets import load_builtin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "iris"
SECRET = "prediction-store"
MIN_LABELS = 40
CLASSES = ("setosa", "versicolor", "virginica")
#: Labels sent per variant, as (correct, labelled): first too few, then b clearly ahead of a.
FIRST = {"a": (11, 20), "b": (19, 20)}
SECOND = {"a": (66, 120), "b": (114, 120)}


def resource(namespace: str, c: float) -> dict:
    return model_deployment(
        NAME, namespace, task="classification", dataset={"uri": "builtin:sklearn/iris", "target": "target"},
        training={"framework": "sklearn", "estimator": "logisticRegression", "hyperparameters": {"C": c, "max_iter": 500}},
        serving={"replicas": 1},
        monitoring={"feedback": {"enabled": True}},
        rollout={
            "strategy": "abTest",
            "analysis": {"interval": "2s"},
            "abTest": {
                "minLabels": MIN_LABELS,
                "alpha": 0.05,
                "variants": [
                    {"name": "a", "modelVersion": "champion", "weight": 50},
                    {"name": "b", "modelVersion": "challenger", "weight": 50, "headerMatch": {"name": "x-variant", "value": "b"}},
                ],
            },
        },
    )


@pytest.fixture
def quality_env(cluster, namespace, mlflow_server, pod_runner, tmp_path) -> Iterator[dict]:  # noqa: F811
    cluster.apply(CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelship.io", "--timeout=60s")
    with ExitStack() as stack:
        postgres = PostgresServer().start()
        stack.callback(postgres.stop)
        cluster.kubectl("create", "secret", "generic", SECRET, "-n", namespace, f"--from-literal={names.PREDICTION_STORE_SECRET_KEY}={postgres.dsn}")
        prometheus = PrometheusServer(tmp_path / "prometheus", [], [], {}).start()
        stack.callback(prometheus.stop)
        env = {
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "MODELSHIP_TRAINING_POD_LABELS": json.dumps({"modelship.io/test-pod-runner": "local"}),
            "MODELSHIP_RESYNC_INTERVAL": "15",
            names.ENV_PROMETHEUS_URL: prometheus.url,
            names.ENV_PREDICTION_STORE_SECRET: SECRET,
        }
        operator = OperatorProcess(service_account_kubeconfig(cluster, namespace, tmp_path), namespace, env, tmp_path / "operator.log").start()
        stack.callback(lambda: print(f"operator log: {operator.log_path}"))
        stack.callback(operator.stop)
        yield {"prometheus": prometheus, "mlflow": mlflow_server, "servers": stack, "workdir": tmp_path, "operator": operator}


def status_of(cluster, namespace) -> dict:
    return cluster.kubectl_json("get", "mdep", NAME, "-n", namespace).get("status", {})


def wait_status(cluster, namespace, what: str, predicate, timeout: float = 120) -> dict:
    return cluster.wait_until(what, lambda: (s := status_of(cluster, namespace)) and predicate(s) and s, timeout=timeout, interval=0.5)


def pod_env(cluster, namespace: str, version: str) -> dict[str, str]:
    """The environment the operator gave a version's serving container, Secret references resolved
    the way the kubelet would."""
    deployment = cluster.kubectl_json("get", "deployment", f"{NAME}-v{version}", "-n", namespace)
    env = {}
    for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in (entry.get("valueFrom") or {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            secret = cluster.kubectl_json("get", "secret", ref["name"], "-n", namespace)
            env[entry["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


def serve(quality_env: dict, cluster, namespace: str, version: str, variant: str) -> servingkit.Server:
    """What the version's KWOK pod would run as ``variant``, with the spec and the store the
    operator gave its Deployment; scraped by Prometheus once ready (see :func:`scraped`)."""
    env = pod_env(cluster, namespace, version)
    assert env.get(names.ENV_PREDICTION_STORE_DSN), "the operator passes the prediction store to the pods"
    context = servingkit.serve(
        quality_env["workdir"] / f"v{version}", f"{namespace}-{NAME}", version, quality_env["mlflow"].url, quality_env["workdir"] / "cache",
        variant=variant, extra_env={k: env[k] for k in (names.ENV_SPEC, names.ENV_PREDICTION_STORE_DSN)},
    )
    return quality_env["servers"].enter_context(context)


def scraped(quality_env: dict, namespace: str, version: str, server: servingkit.Server) -> servingkit.Server:
    server.wait_ready()
    quality_env["prometheus"].add_group([f"127.0.0.1:{server.port}"], {"namespace": namespace, "pod": f"{NAME}-v{version}"})
    return server


def predict_and_label(server: servingkit.Server, rows: list[dict], correct: int) -> None:
    """Predict ``rows`` on ``server``, then send their true classes: the first ``correct`` agree
    with the prediction, the rest name another class."""
    ids, predicted = [], []
    for start in range(0, len(rows), 30):
        answer = server.client.post("/predict", json=rows[start:start + 30])
        assert answer.status_code == 200, answer.text
        ids += answer.json()["recordIds"]
        predicted += answer.json()["predictions"]
    labels = [p if i < correct else next(c for c in CLASSES if c != p) for i, p in enumerate(predicted)]
    answer = wait_until(
        "the predictions to be stored",
        lambda: (r := server.client.post("/feedback", json=[{"requestId": i, "label": label} for i, label in zip(ids, labels, strict=True)])).status_code != 404 and r,
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["stored"] == len(rows), answer.text


def variants(status: dict) -> dict[str, dict]:
    return {v["name"]: v for v in (status.get("rollout") or {}).get("variants") or []}


def labelled(status: dict) -> dict[str, int | None]:
    return {name: v.get("labelled") for name, v in variants(status).items()}


def z_test_p_value(a: tuple[int, int], b: tuple[int, int]) -> float:
    """The pooled two-proportion z-test, from SciPy's normal distribution (the fixed-horizon one)."""
    pa, pb = a[0] / a[1], b[0] / b[1]
    pooled = (a[0] + b[0]) / (a[1] + b[1])
    z = (pb - pa) / (pooled * (1 - pooled) * (1 / a[1] + 1 / b[1])) ** 0.5
    return 2 * stats.norm.sf(abs(z))


def always_valid_p_value(a: tuple[int, int], b: tuple[int, int], min_detectable_effect: float = 0.05) -> float:
    """The mSPRT's 1/Λ (normal mixture, τ = the default minimum detectable effect × the pooled
    accuracy) on the z-test's variance: the oracle for the operator's default test."""
    pa, pb = a[0] / a[1], b[0] / b[1]
    pooled = (a[0] + b[0]) / (a[1] + b[1])
    variance = pooled * (1 - pooled) * (1 / a[1] + 1 / b[1])
    tau2 = (min_detectable_effect * pooled) ** 2
    ratio = math.sqrt(variance / (variance + tau2)) * math.exp(tau2 * (pb - pa) ** 2 / (2 * variance * (variance + tau2)))
    return min(1.0, 1 / ratio)


def test_ab_test_compares_variants_on_live_accuracy(cluster, namespace, quality_env):
    started = time.monotonic()
    cluster.apply(yaml.safe_dump(resource(namespace, c=1.0)))
    wait_status(cluster, namespace, "version 1 to be champion", lambda s: s.get("championVersion") == "1" and s.get("phase") == "Serving", timeout=240)
    cluster.kubectl("patch", "mdep", NAME, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"training": {"hyperparameters": {"C": 0.5, "max_iter": 500}}}}))
    # Version 1's server starts as variant a while version 2 trains (the A/B test will relabel
    # its pods so; checked below), to keep the test short.
    first = serve(quality_env, cluster, namespace, "1", "a")
    testing = wait_status(cluster, namespace, "the A/B test of versions 1 and 2", lambda s: {n: v["version"] for n, v in variants(s).items()} == {"a": "1", "b": "2"}, timeout=240)
    assert testing["rollout"]["phase"] == "ABTesting" and testing["rollout"]["abStartedAt"]
    print(f"A/B test of versions 1 and 2 running after {time.monotonic() - started:.0f}s")
    cluster.wait_until("the variants' pod labels", lambda: [pod_env(cluster, namespace, v)[names.ENV_VARIANT] for v in ("1", "2")] == ["a", "b"], timeout=30)
    servers = {"a": scraped(quality_env, namespace, "1", first), "b": scraped(quality_env, namespace, "2", serve(quality_env, cluster, namespace, "2", "b"))}
    prometheus: PrometheusServer = quality_env["prometheus"]
    # Prometheus sees each variant's labelled counters at 0 before any label arrives.
    cluster.wait_until(
        "the labelled series of both variants", lambda: {s["metric"]["variant"] for s in prometheus.query(metrics.LABELLED_PREDICTIONS_TOTAL)} == {"a", "b"}, timeout=30
    )
    rows = load_builtin("sklearn/iris").drop(columns=["target"]).sample(frac=1.0, random_state=7).to_dict(orient="records")

    # 1. Too few labels: the figures are there, the verdict waits for minLabels.
    for name, (correct, count) in FIRST.items():
        predict_and_label(servers[name], rows[:count], correct)
    early = wait_status(cluster, namespace, "the first labels in status", lambda s: labelled(s) == {"a": 20, "b": 20}, timeout=60)
    a, b = variants(early)["a"], variants(early)["b"]
    assert a["accuracy"] == pytest.approx(11 / 20) and b["accuracy"] == pytest.approx(19 / 20)
    assert "comparison" not in a, "the baseline is not compared with itself"
    comparison = b["comparison"]
    assert (comparison["verdict"], comparison["significant"], comparison["baseline"]) == ("TooFewLabels", False, "a")
    assert comparison["message"].startswith(f"not enough labels: 20 of {MIN_LABELS} on ")
    assert "pValue" not in comparison and "significantSince" not in comparison
    printed = modelship(cluster, "status", NAME, "-n", namespace)
    assert printed.returncode == 0 and f"live quality: 20 labelled, accuracy 0.95; vs a: TooFewLabels: not enough labels: 20 of {MIN_LABELS}" in printed.stdout, printed.stdout

    # 2. Enough labels, b clearly ahead: significant, in b's favour, with the exact counts.
    for name, (correct, count) in SECOND.items():
        done = FIRST[name]
        predict_and_label(servers[name], rows[done[1]:count], correct - done[0])
    final = wait_status(cluster, namespace, "all the labels in status", lambda s: labelled(s) == {"a": 120, "b": 120}, timeout=60)
    a, b = variants(final)["a"], variants(final)["b"]
    assert a["accuracy"] == pytest.approx(66 / 120) and b["accuracy"] == pytest.approx(114 / 120)
    comparison = b["comparison"]
    assert (comparison["verdict"], comparison["significant"], comparison["test"], comparison["metric"]) == ("Better", True, "mSPRT", "accuracy")
    assert comparison["difference"] == pytest.approx(114 / 120 - 66 / 120)
    assert comparison["minDetectableEffect"] == 0.05  # the spec's default, declared in the status schema (else the API server drops it)
    # The status keeps the lowest p-value of every look; the looks in between see only the
    # counts before and after each batch of labels (unless a scrape caught one half-counted), so
    # this is the last look's. Far above the fixed-horizon test's on the same data (8e-13).
    expected = always_valid_p_value(SECOND["a"], SECOND["b"])
    assert comparison["pValue"] <= expected * (1 + 1e-6) and comparison["pValue"] < comparison["alpha"] == 0.05, (comparison, expected)
    assert comparison["pValue"] > z_test_p_value(SECOND["a"], SECOND["b"])
    if comparison["pValue"] < expected * (1 - 1e-6):
        print(f"a look between batches of labels saw a lower always-valid p-value: {comparison['pValue']:.3g} < {expected:.3g}")
    assert comparison["message"].startswith("b better than a: accuracy 0.95 vs 0.55, significant at 0.05 with 240 labels (always-valid p = "), comparison["message"]
    assert comparison["significantSince"] >= final["rollout"]["abStartedAt"]
    printed = modelship(cluster, "status", NAME, "-n", namespace)
    assert printed.returncode == 0 and "live quality: 120 labelled, accuracy 0.95; vs a: Better: b better than a" in printed.stdout, printed.stdout
    assert "live quality: 120 labelled, accuracy 0.55" in printed.stdout
    wide = cluster.kubectl("get", "mdep", NAME, "-n", namespace, "-o", "wide").stdout
    assert "AB-VERDICT" in wide and "Better" in wide, wide
    print(f"significant verdict in status after {time.monotonic() - started:.0f}s")
    events = cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={NAME}")["items"]
    significant = [e for e in events if e["reason"] == "ABTestSignificant"]
    assert len(significant) == 1 and significant[0]["message"].startswith("A/B test: b better than a"), significant

    # The status is the memory: an operator SIGKILLed and started again neither forgets when the
    # difference became significant nor announces it a second time.
    quality_env["operator"].kill()
    quality_env["operator"].start()
    # It informs a person; it never promotes by itself.
    later = wait_status(cluster, namespace, "another analysis", lambda s: s["rollout"]["qualityCheckedAt"] > final["rollout"]["qualityCheckedAt"], timeout=30)
    assert later["championVersion"] == "1" and later["rollout"]["phase"] == "ABTesting"
    assert variants(later)["b"]["comparison"]["significantSince"] == comparison["significantSince"] and labelled(later) == {"a": 120, "b": 120}
    events = cluster.kubectl_json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={NAME}")["items"]
    assert len([e for e in events if e["reason"] == "ABTestSignificant"]) == 1, events
    assert modelship(cluster, "promote", NAME, "-n", namespace, "--variant", "b").returncode == 0
    wait_status(cluster, namespace, "b to be champion", lambda s: s.get("championVersion") == "2" and s.get("phase") == "Serving", timeout=60)
