"""Platform benchmark: how long the whole platform takes to start and to serve, and what the
gateway costs.

    sudo .venv/bin/python benchmarks/bench_platform.py [--duration 10] [--rounds 2]

1. Starts the platform (hack/platform/localplatform.py) from a warm binary cache: control plane,
   process kubelet, Contour + Envoy, MLflow, Prometheus, Alertmanager, the operator.
2. Applies the diabetes sample and times apply → the first prediction through the gateway
   (training pod, serving pod Ready by its probe, EndpointSlice, Contour → Envoy).
3. Drives the model server at concurrency 32 through Envoy (the gateway URL) and straight to the
   pod (its address on the bridge), interleaved over ``--rounds`` rounds, with the load generator
   of benchmarks/bench_serving.py (``wrk`` when installed, else asyncio + httpx in a child
   process), and prints requests/s, p50 and p99 (medians over rounds): the gateway's overhead.
4. Tears the platform down and checks nothing is left over.

Figures only, no asserts: the machine is shared, so the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "hack" / "platform")]

from bench_serving import load, loadavg  # noqa: E402

import localplatform  # noqa: E402
import yaml  # noqa: E402

RECORD = {"age": 0.04, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04, "s2": -0.03, "s3": -0.04, "s4": -0.003, "s5": 0.02, "s6": -0.02}


def predicts(url: str) -> bool:
    request = urllib.request.Request(url, data=json.dumps(RECORD).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    platform = localplatform.LocalPlatform(Path(tempfile.mkdtemp(prefix="bench-platform-")))
    try:
        platform.start()
        print(f"platform start (warm cache):          {platform.start_seconds:6.1f} s   (load {loadavg()})", flush=True)
        namespace = "bench"
        platform.cluster.create_namespace(namespace)
        resource = yaml.safe_load(localplatform.SAMPLE.read_text())
        resource["metadata"]["namespace"] = namespace
        applied = time.monotonic()
        platform.cluster.apply(json.dumps(resource))
        gateway = f"{platform.gateway_url}/{namespace}/{resource['metadata']['name']}/predict"
        platform.cluster.wait_until("a prediction through the gateway", lambda: predicts(gateway), timeout=600, interval=0.25)
        print(f"apply → first prediction via gateway: {time.monotonic() - applied:6.1f} s   (load {loadavg()})", flush=True)

        [pod] = platform.cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=serving")["items"]
        direct = f"http://{pod['status']['podIP']}:3000/predict"
        body = json.dumps(RECORD)
        figures: dict[str, list[dict[str, float]]] = {"via Envoy": [], "straight to the pod": []}
        for _ in range(args.rounds):
            figures["via Envoy"].append(load(gateway, 32, args.duration, body))
            figures["straight to the pod"].append(load(direct, 32, args.duration, body))
        print(f"concurrency 32, {args.duration} s × {args.rounds} rounds (medians), load {loadavg()}:")
        for name, runs in figures.items():
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50"] for r in runs)
            p99 = statistics.median(r["p99"] for r in runs)
            failed = sum(r["non2xx"] for r in runs)
            print(f"  {name:<20} {rps:8.1f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   non-2xx {failed:.0f}")
    finally:
        stopping = time.monotonic()
        platform.stop(check=False)
        left = platform.leftovers()
        print(f"teardown: {time.monotonic() - stopping:.1f} s, " + ("left over: " + "; ".join(left) if left else "nothing left over"))


if __name__ == "__main__":
    main()
