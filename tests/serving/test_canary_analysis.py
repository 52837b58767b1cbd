"""The canary analysis against the real thing: a real Prometheus scrapes three real model servers
of one registered version — healthy, one whose predictions fail, one that is slow — and the
operator's Prometheus client and verdict functions judge each over the same window."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faultymodels
import httpx
import pytest
import servingkit
from servers import PrometheusServer, free_port, wait_until

from modelship.api import ModelDeployment
from modelship.monitoring import analysis, rules
from modelship.operator.prometheus import PrometheusClient
from modelship.operator.rollout import judge, overall

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KINDS = {
    "healthy": {},
    "erring": {faultymodels.FAULT_ENV: "error"},
    # Slow well beyond the bound below, which has room for a loaded machine's healthy server.
    "slow": {faultymodels.DELAY_ENV: "0.6"},
}
ANALYSIS = {
    "maxErrorRate": 0.05,
    "maxLatencyP95Ms": 250,
    "minRequests": 10,
    "interval": "10s",
    "metrics": [
        # Records predicted per second: a custom check on a counter only successes feed.
        {
            "name": "recordsPerSecond",
            "query": 'sum(rate(modelship_predicted_records_total{namespace="{{namespace}}",model="{{model}}",version="{{version}}"}[{{window}}]))',
            "min": 0.1,
        },
        # Balanced brackets, so the contract accepts it, but not PromQL: Prometheus refuses it.
        {"name": "notPromql", "query": "sum(rate(modelship_predictions_total[{{window}}]) by)", "max": 1},
    ],
}


def resource(namespace: str, model: str) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "faulty", "namespace": namespace},
            "spec": {
                "task": "regression",
                "modelName": model,
                "dataset": {"uri": servingkit.HOUSING_CSV.as_uri(), "target": "median_house_value"},
                "rollout": {"strategy": "canary", "analysis": ANALYSIS},
            },
        }
    )


@pytest.fixture(scope="module")
def scraped(sqlite_backend: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, str, str]]:
    workdir = tmp_path_factory.mktemp("canary-analysis")
    spec = servingkit.housing_spec()
    spec["training"] = {"framework": "sklearn", "estimator": faultymodels.ESTIMATOR}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", faultymodels.with_pythonpath(dict(os.environ))["PYTHONPATH"])
        result = servingkit.train(sqlite_backend["workdir"], sqlite_backend["tracking_uri"], "faulty", spec)
        with (
            servingkit.serve(workdir / "healthy", "faulty", result["version"], sqlite_backend["tracking_uri"], workdir / "cache", variant="canary", extra_env=KINDS["healthy"]) as healthy,
            servingkit.serve(workdir / "erring", "faulty", result["version"], sqlite_backend["tracking_uri"], workdir / "cache", variant="canary", extra_env=KINDS["erring"]) as erring,
            servingkit.serve(workdir / "slow", "faulty", result["version"], sqlite_backend["tracking_uri"], workdir / "cache", variant="canary", extra_env=KINDS["slow"]) as slow,
        ):
            servers = {"healthy": healthy, "erring": erring, "slow": slow}
            for server in servers.values():
                server.wait_ready()
            # One simulated pod per kind: the namespace label tells them apart, as it would two
            # ModelDeployments of the same model.
            groups = [([f"127.0.0.1:{server.port}"], {"namespace": kind, "pod": f"faulty-{kind}"}) for kind, server in servers.items()]
            prometheus = PrometheusServer(workdir / "prometheus", [], [REPO / rules.RULES_OUTPUTS[0]], {}, groups=groups).start()
            try:
                drive(servers, seconds=12)
                for kind in servers:
                    wait_until(f"{kind} requests in Prometheus", lambda kind=kind: prometheus.query(f'modelship_predictions_total{{namespace="{kind}"}} > 0'))
                time.sleep(2)  # one more scrape after the last request
                yield prometheus, "faulty", result["version"]
            finally:
                prometheus.stop()


def drive(servers: dict[str, servingkit.Server], seconds: float) -> None:
    """A small bounded client: two workers per server post single records for ``seconds``."""
    deadline = time.monotonic() + seconds

    def worker(server: servingkit.Server) -> int:
        sent = 0
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while time.monotonic() < deadline:
                client.post("/predict", json=servingkit.HOUSING_RECORD)
                sent += 1
        return sent

    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * len(servers)) as pool:
        sent = list(pool.map(worker, [s for s in servers.values() for _ in range(2)]))
    per_server = [sent[i] + sent[i + 1] for i in range(0, len(sent), 2)]  # the slow one answers one at a time
    assert min(per_server) >= 15, per_server  # minRequests is 10


def measure(url: str, kind: str, model: str, version: str, window_seconds: float = 120):
    now = dt.datetime.now(dt.timezone.utc)
    client = PrometheusClient(url, timeout=5)

    async def go():
        try:
            return await client.measure(resource(kind, model), version, now - dt.timedelta(seconds=window_seconds), now)
        finally:
            await client.close()

    return asyncio.run(go())


def verdicts(sample, kind: str, model: str) -> dict[str, str]:
    return {check.name: check.verdict for check in judge(resource(kind, model).spec.rollout.analysis, sample)}


def test_healthy_version_passes(scraped):
    prometheus, model, version = scraped
    sample = measure(prometheus.url, "healthy", model, version)
    assert sample.get("requests").value >= 10 and sample.get("errorRate").value == 0.0
    assert 0 < sample.get("latencyP95").value < 0.25
    assert verdicts(sample, "healthy", model) == {
        "requests": "Successful", "errorRate": "Successful", "latencyP95": "Successful", "recordsPerSecond": "Successful", "notPromql": "Error",
    }
    assert "refused the query of notPromql" in sample.get("notPromql").error


def test_erring_version_fails_on_its_error_rate(scraped):
    prometheus, model, version = scraped
    sample = measure(prometheus.url, "erring", model, version)
    assert sample.get("errorRate").value == pytest.approx(1.0)
    checks = judge(resource("erring", model).spec.rollout.analysis, sample)
    assert overall(checks) == "Failed"
    by_name = {c.name: c for c in checks}
    assert by_name["errorRate"].verdict == "Failed" and by_name["errorRate"].message == "errorRate 1 is outside <= 0.05"
    # It predicted no record, so that counter has no series: no data is an Error, never a pass.
    assert by_name["recordsPerSecond"].verdict == "Error" and by_name["recordsPerSecond"].message == "no data"


def test_slow_version_fails_on_its_p95_latency(scraped):
    prometheus, model, version = scraped
    sample = measure(prometheus.url, "slow", model, version)
    assert sample.get("errorRate").value == 0.0 and 0.5 <= sample.get("latencyP95").value <= 2.5
    assert verdicts(sample, "slow", model)["latencyP95"] == "Failed"


def test_a_version_without_traffic_is_an_error_not_a_pass(scraped):
    prometheus, model, _ = scraped
    sample = measure(prometheus.url, "healthy", model, "999")
    assert verdicts(sample, "healthy", model)["requests"] == "Error"
    assert overall(judge(resource("healthy", model).spec.rollout.analysis, sample)) == "Error"


def test_prometheus_unreachable_is_an_error_verdict(scraped):
    _, model, version = scraped
    sample = measure(f"http://127.0.0.1:{free_port()}", "healthy", model, version)
    assert all(m.error and "unreachable" in m.error for m in sample.measurements)
    assert set(verdicts(sample, "healthy", model).values()) == {"Error"}


def test_the_queries_match_the_recording_rules_series(scraped):
    # The analysis and the recording rules read the same series: over the same minute both see
    # the erring server fail every request.
    prometheus, model, version = scraped
    ratio = wait_until("the recorded error ratio", lambda: prometheus.query(f'{rules.m.RECORD_ERROR_RATIO}{{namespace="erring"}}'), timeout=45)
    assert float(ratio[0]["value"][1]) == pytest.approx(1.0)
    direct = prometheus.query(analysis.error_ratio_query("erring", model, version, "1m"))
    assert float(direct[0]["value"][1]) == pytest.approx(1.0)
