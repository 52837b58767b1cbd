"""Operator benchmark on the Go-built control plane (KWOK simulates every pod, training included).

Prints:
  * p50/p95 time from `kubectl apply` of a ModelDeployment to its training Job existing,
    measured one resource at a time (the operator otherwise idle);
  * the time for the operator to settle 200 ModelDeployments (each with its Job finished and
    the outcome written to status), and the operator's RSS before, at and after settling.

KWOK completes the training pods without running them, so each Job ends without a result and
the operator records `ResultMissing` after asking the (real, local) MLflow registry; that is
the full reconcile path minus the training itself.

    .venv/bin/python benchmarks/bench_operator.py [--count 200] [--latency-samples 20]

With ``--rollout`` it measures canary rollouts instead (see :func:`bench_rollout`), with
``--count`` resources (200 by default) in rollout at once:
  * the time from a step's pause end to the next weight in the HTTPRoute (p50/p95/max over
    every step transition of every resource);
  * the operator's CPU seconds and peak RSS over the run, its CPU share and reconciles/s while
    it analyses all of them every interval, and the analysis queries/s Prometheus answered;
  * the load average at start and end: the machine is shared, so read the figures against it.

    .venv/bin/python benchmarks/bench_operator.py --rollout [--count 200] [--profile stacks.txt]

``--profile`` samples the operator's threads with py-spy during the rollout (collapsed stacks,
waiting threads included: where the reconciles wait is the question).

Each resource in rollout has two Services (champion and candidate) and two pods; the test
cluster's service range (hack/test-cluster/testcluster.py SERVICE_CIDR) holds thousands, and
the KWOK nodes get room for every pod.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "hack" / "test-cluster"), str(REPO / "tests" / "support")]

import testcluster  # noqa: E402
from resources import model_deployment  # noqa: E402
from servers import MlflowServer, OperatorProcess  # noqa: E402

CRD = REPO / "manifests" / "crds" / "modelship.io_modeldeployments.yaml"


def resource(name: str, namespace: str) -> dict:
    return model_deployment(name, namespace, rollout={"strategy": "immediate"})


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def watch_jobs(kubeconfig: Path, namespace: str, seen: dict[str, float], stop: threading.Event) -> None:
    from kubernetes import client, config, watch

    api = client.BatchV1Api(config.new_client_from_config(str(kubeconfig)))
    while not stop.is_set():
        for event in watch.Watch().stream(api.list_namespaced_job, namespace, timeout_seconds=5):
            owner = (event["object"].metadata.labels or {}).get("modelship.io/deployment")
            if owner and owner not in seen:
                seen[owner] = time.perf_counter()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="ModelDeployments in the settle/RSS phase.")
    parser.add_argument("--latency-samples", type=int, default=20, help="Resources applied one by one for the latency figure.")
    parser.add_argument("--rollout", action="store_true", help="Measure canary rollouts (step latency, analysis cost) instead.")
    parser.add_argument("--profile", type=Path, help="With --rollout: py-spy samples of the operator during the rollout (collapsed stacks, idle threads too) into this file.")
    args = parser.parse_args()
    if args.rollout:
        return bench_rollout(args.count, profile=args.profile)

    work = Path(tempfile.mkdtemp(prefix="modelship-bench-"))
    cluster = testcluster.new_test_cluster()
    mlflow = MlflowServer(work / "mlflow")
    operator = None
    stop = threading.Event()
    try:
        cluster.start()
        print(f"cluster up in {cluster.start_seconds:.1f}s")
        cluster.apply(CRD)
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelship.io", "--timeout=60s")
        namespace = cluster.create_namespace("bench")
        mlflow.start()
        operator = OperatorProcess(cluster.kubeconfig, namespace, {"MLFLOW_TRACKING_URI": mlflow.url, "MODELSHIP_RESYNC_INTERVAL": "600"}, work / "operator.log").start()
        time.sleep(2)
        rss_idle = rss_mib(operator.process.pid)

        seen: dict[str, float] = {}
        watcher = threading.Thread(target=watch_jobs, args=(cluster.kubeconfig, namespace, seen, stop), daemon=True)
        watcher.start()
        time.sleep(1)

        latencies = []
        for index in range(args.latency_samples):
            name = f"latency-{index}"
            cluster.kubectl("apply", "-f", "-", input=json.dumps(resource(name, namespace)))
            applied = time.perf_counter()
            deadline = applied + 30
            while name not in seen and time.perf_counter() < deadline:
                time.sleep(0.005)
            if name in seen:
                latencies.append(seen[name] - applied)
        print(f"apply → Job created ({len(latencies)} samples): p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms")

        bulk = args.count - args.latency_samples
        documents = "\n---\n".join(yaml.safe_dump(resource(f"md-{i:03d}", namespace)) for i in range(bulk))
        started = time.perf_counter()
        cluster.kubectl("apply", "-f", "-", input=documents, timeout=600)
        applied_seconds = time.perf_counter() - started

        def settled() -> int:
            items = cluster.kubectl_json("get", "mdep", "-n", namespace)["items"]
            return sum(1 for item in items if (item.get("status", {}).get("lastTraining") or {}).get("finishedAt"))

        peak = rss_idle
        done = 0
        while time.perf_counter() - started < 900:
            done = settled()
            peak = max(peak, rss_mib(operator.process.pid))
            if done >= args.count:
                break
            time.sleep(2)
        settle_seconds = time.perf_counter() - started
        rss_settled = rss_mib(operator.process.pid)
        time.sleep(20)
        rss_after = rss_mib(operator.process.pid)
        print(f"{args.count} ModelDeployments: applied in {applied_seconds:.1f}s, {done} settled after {settle_seconds:.1f}s")
        print(f"operator RSS: idle {rss_idle:.0f} MiB, peak {peak:.0f} MiB, settled {rss_settled:.0f} MiB, 20 s later {rss_after:.0f} MiB")
        print(f"operator RSS per ModelDeployment beyond idle: {(rss_after - rss_idle) / args.count * 1024:.0f} KiB")
        return 0 if done >= args.count else 1
    finally:
        stop.set()
        if operator:
            operator.stop()
        mlflow.stop()
        cluster.stop()


STEP_PAUSE = 10.0
ROLLOUT_STEPS = [{"weight": 10, "pause": "10s"}, {"weight": 50, "pause": "10s"}, {"weight": 100, "pause": "10s"}]


def rollout_resource(name: str, namespace: str) -> dict:
    # Manual approval: after the last step every resource keeps being analysed.
    rollout = {"strategy": "canary", "canary": {"steps": ROLLOUT_STEPS}, "analysis": {"interval": "5s", "minRequests": 1}, "approval": "manual"}
    return model_deployment(name, namespace, serving={"replicas": 1}, rollout=rollout)


def synthetic_series(namespace: str, models: list[str]) -> dict:
    """Recording rules that make Prometheus hold, for version 2 of every model, the series a
    healthy model server would export (10 requests/s, no errors, every answer under 10 ms): the
    operator's queries and Prometheus's work are real, only the model servers are left out."""
    rules = []
    for model in models:
        labels = {"namespace": namespace, "model": model, "version": "2", "variant": "canary"}
        rules += [
            {"record": "modelship_predictions_total", "expr": "vector(time() * 10)", "labels": {**labels, "outcome": "success"}},
            {"record": "modelship_predictions_total", "expr": "vector(0)", "labels": {**labels, "outcome": "error"}},
            {"record": "modelship_prediction_latency_seconds_bucket", "expr": "vector(time() * 10)", "labels": {**labels, "le": "0.01"}},
            {"record": "modelship_prediction_latency_seconds_bucket", "expr": "vector(time() * 10)", "labels": {**labels, "le": "+Inf"}},
        ]
    return {"groups": [{"name": "synthetic", "interval": "1s", "rules": rules}]}


def cpu_seconds(pid: int) -> float:
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory (the kernel keeps it: no sampling gaps)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def counter_total(exposition: str, name: str, labels: str = "") -> float:
    """Sum of a counter's samples in a Prometheus text exposition (``labels``: a substring
    every counted sample's label set must contain)."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and not line.startswith("#") and labels in line:
            metric, _, value = line.rpartition(" ")
            if metric.split("{")[0] == name:
                total += float(value)
    return total


def prometheus_queries(prometheus_url: str) -> float:
    """Instant queries Prometheus has answered so far (its own counter)."""
    import urllib.request

    with urllib.request.urlopen(f"{prometheus_url}/metrics", timeout=10) as response:
        return counter_total(response.read().decode(), "prometheus_http_requests_total", 'handler="/api/v1/query"')


def watch_routes(kubeconfig: Path, namespace: str, seen: dict[str, dict[int, float]], stop: threading.Event) -> None:
    """When each route first gave version 2 each weight (the watcher's clock)."""
    from kubernetes import client, config, watch

    api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    while not stop.is_set():
        for event in watch.Watch().stream(api.list_namespaced_custom_object, "gateway.networking.k8s.io", "v1", namespace, "httproutes", timeout_seconds=5):
            route = event["object"]
            name = route["metadata"]["name"]
            for backend in route["spec"]["rules"][-1]["backendRefs"]:
                if backend["name"].endswith("-v2"):
                    seen.setdefault(name, {}).setdefault(backend["weight"], time.perf_counter())


def api_server_pid(cluster: testcluster.TestCluster) -> int | None:
    return next((pid for pid in testcluster._pids_mentioning(f"{cluster.workdir}/") if "kube-apiserver" in testcluster._cmdline(pid).split(" ", 1)[0]), None)


def bench_rollout(count: int, operator_env: dict[str, str] | None = None, profile: Path | None = None) -> int:
    """``count`` resources, each with champion 1 and a trained candidate 2 (written into status
    before the operator starts, as if their trainings had finished), roll out at once through
    three 10 s steps against a real Prometheus, then wait for approval while still analysed."""
    from kubernetes import client, config

    from modelship.api import ModelDeployment, names
    from modelship.operator import builders
    from servers import PrometheusServer

    load_at_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="modelship-bench-rollout-"))
    # Two pods per resource (champion and candidate), spread over the two KWOK nodes.
    cluster = testcluster.new_test_cluster(node_capacity={"cpu": "64", "memory": "512Gi", "pods": str(max(110, count + 20))})
    mlflow = MlflowServer(work / "mlflow")
    prometheus = None
    operator = None
    stop = threading.Event()
    try:
        cluster.start()
        cluster.apply(CRD)
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelship.io", "--timeout=60s")
        namespace = cluster.create_namespace("bench-rollout")
        resources = [rollout_resource(f"md-{i:03d}", namespace) for i in range(count)]
        models = [ModelDeployment.model_validate(r).registered_model_name for r in resources]
        (work / "synthetic.yaml").write_text(yaml.safe_dump(synthetic_series(namespace, models)))
        prometheus = PrometheusServer(work / "prometheus", [], [work / "synthetic.yaml"], {}).start()
        mlflow.start()
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(r) for r in resources), timeout=600)
        api = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))
        for raw in resources:
            body = api.get_namespaced_custom_object("modelship.io", "v1alpha1", namespace, "modeldeployments", raw["metadata"]["name"])
            spec_hash = builders.training_hash(ModelDeployment.model_validate({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}))
            trained = {"job": f"{raw['metadata']['name']}-train-{spec_hash}", "specHash": spec_hash, "startedAt": "2026-01-01T00:00:00Z",
                       "finishedAt": "2026-01-01T00:01:00Z", "modelVersion": "2", "gate": {"passed": True, "reason": "benchmark"}}
            api.patch_namespaced_custom_object_status("modelship.io", "v1alpha1", namespace, "modeldeployments", raw["metadata"]["name"],
                                                      {"status": {"championVersion": "1", "lastTraining": trained}})
        seen: dict[str, dict[int, float]] = {}
        watcher = threading.Thread(target=watch_routes, args=(cluster.kubeconfig, namespace, seen, stop), daemon=True)
        watcher.start()
        env = {"MLFLOW_TRACKING_URI": mlflow.url, "MODELSHIP_RESYNC_INTERVAL": "600", names.ENV_PROMETHEUS_URL: prometheus.url, **(operator_env or {})}
        operator = OperatorProcess(cluster.kubeconfig, namespace, env, work / "operator.log").start()
        pid = operator.process.pid
        rss_idle = rss_mib(pid)
        cpu_at_start = cpu_seconds(pid)
        apiserver = api_server_pid(cluster)
        apiserver_cpu_at_start = cpu_seconds(apiserver) if apiserver else float("nan")
        spy = None
        if profile:
            import subprocess

            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--idle", "--threads", "--rate", "50",
                                    "--format", "raw", "--output", str(profile)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def waiting() -> int:
            items = cluster.kubectl_json("get", "mdep", "-n", namespace)["items"]
            return sum(1 for item in items if item.get("status", {}).get("phase") == "AwaitingApproval")

        started = time.perf_counter()
        done = 0
        while time.perf_counter() - started < 900:
            done = waiting()
            if done >= count:
                break
            time.sleep(2)
        rollout_seconds = time.perf_counter() - started
        cpu_rollout = cpu_seconds(pid) - cpu_at_start
        apiserver_cpu_rollout = (cpu_seconds(apiserver) if apiserver else float("nan")) - apiserver_cpu_at_start
        if spy:
            spy.send_signal(2)
            spy.wait(60)
        # Steady state: every resource analysed every 5 s, nothing else to do.
        reconciles_before = counter_total(operator.metrics(), "modelship_operator_reconciles_total")
        queries_before, cpu_before, window_started = prometheus_queries(prometheus.url), cpu_seconds(pid), time.perf_counter()
        time.sleep(30)
        window = time.perf_counter() - window_started
        cpu_share = (cpu_seconds(pid) - cpu_before) / window
        queries_per_second = (prometheus_queries(prometheus.url) - queries_before) / window
        reconciles_per_second = (counter_total(operator.metrics(), "modelship_operator_reconciles_total") - reconciles_before) / window
        rss_steady, rss_peak = rss_mib(pid), peak_rss_mib(pid)
        delays = [times[b] - times[a] - STEP_PAUSE for times in seen.values() for a, b in ((10, 50), (50, 100)) if a in times and b in times]
        print(f"load average at start: {load_at_start}")
        print(f"{count} canaries: {done} reached AwaitingApproval in {rollout_seconds:.0f}s (3 steps of {STEP_PAUSE:.0f}s each); CPU over the rollout: operator {cpu_rollout:.1f}s, kube-apiserver {apiserver_cpu_rollout:.1f}s")
        if delays:
            print(f"pause end → next weight in the HTTPRoute ({len(delays)} transitions): p50 {statistics.median(delays):.2f}s, p95 {percentile(delays, 0.95):.2f}s, max {max(delays):.2f}s")
        print(f"operator while analysing {count} canaries every 5 s: {queries_per_second:.0f} analysis queries/s, {reconciles_per_second:.0f} reconciles/s, CPU {cpu_share * 100:.0f}% of a core")
        print(f"operator RSS: idle {rss_idle:.0f} MiB, steady {rss_steady:.0f} MiB, peak {rss_peak:.0f} MiB; CPU over the whole run {cpu_seconds(pid):.1f}s")
        print(f"load average at end: {load_average()}")
        return 0 if done >= count else 1
    finally:
        stop.set()
        if operator:
            operator.stop()
        if prometheus:
            prometheus.stop()
        mlflow.stop()
        cluster.stop()

if __name__ == "__main__":
    sys.exit(main())
