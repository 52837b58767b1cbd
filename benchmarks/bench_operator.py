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
from servers import MlflowServer, OperatorProcess  # noqa: E402

CRD = REPO / "manifests" / "crds" / "modelship.io_modeldeployments.yaml"


def resource(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}, "rollout": {"strategy": "immediate"}},
    }


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
    args = parser.parse_args()

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


if __name__ == "__main__":
    sys.exit(main())
