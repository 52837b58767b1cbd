"""The generated Prometheus rules against the real thing: a real Prometheus scrapes a real model
server, evaluates the rules the chart ships, and raises ModelshipDataDrift when shifted inputs
arrive (pending: the rule's ``for`` is minutes; promtool covers the firing in tests/monitoring)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import servingkit
from servers import PrometheusServer, wait_until

from modelship.monitoring import dashboards, rules
from modelship.monitoring import metrics as names

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPEC = {"monitoring": {"drift": {"method": "psi", "threshold": 0.2, "driftShare": 0.5, "windowSize": 200, "minRows": 50, "interval": "1s"}}}
#: What the chart's PodMonitor adds to a model server's series (the namespace, the pod, and the
#: pod's modelship.io/deployment label).
SCRAPED = {"namespace": "team-a", "pod": "housing-v1-abc", names.LABEL_DEPLOYMENT: "housing-prices"}


@pytest.fixture(scope="module")
def scraped(housing_model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[servingkit.Server, PrometheusServer]]:
    workdir = tmp_path_factory.mktemp("scraped")
    with servingkit.serve(workdir, housing_model["name"], housing_model["version"], housing_model["tracking_uri"], workdir / "cache", spec=SPEC, variant="canary") as server:
        server.wait_ready()
        prometheus = PrometheusServer(workdir / "prometheus", [f"127.0.0.1:{server.port}"], [REPO / rules.RULES_OUTPUTS[0]], SCRAPED).start()
        try:
            yield server, prometheus
        finally:
            prometheus.stop()


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    return pd.read_csv(servingkit.HOUSING_CSV).drop(columns=["median_house_value"]).dropna().sample(n, random_state=seed).to_dict(orient="records")


def test_recording_rules_see_the_served_version(scraped: tuple[servingkit.Server, PrometheusServer], housing_model: dict[str, Any]) -> None:
    server, prometheus = scraped
    version = {"namespace": "team-a", names.LABEL_DEPLOYMENT: "housing-prices", "model": housing_model["name"], "version": housing_model["version"], "variant": "canary"}
    # Prometheus scrapes its first round a few seconds after it is ready: the traffic must come
    # after it, or the first sample already holds every request and rate() sees no increase.
    wait_until("the server's first scrape", lambda: any(t["health"] == "up" for t in prometheus.targets_active()), timeout=60)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:  # a few seconds of traffic, so rate() over 1m has two samples to compare
        assert server.client.post("/predict", json=servingkit.HOUSING_RECORD).status_code == 200
        time.sleep(0.05)
    rate = wait_until("request rate", lambda: prometheus.query(f'{names.RECORD_REQUEST_RATE}{{outcome="success"}} > 0'))
    assert rate[0]["metric"] == {"__name__": names.RECORD_REQUEST_RATE, **version, "outcome": "success"}
    ratio = wait_until("error ratio", lambda: prometheus.query(names.RECORD_ERROR_RATIO))
    assert ratio[0]["metric"] == {"__name__": names.RECORD_ERROR_RATIO, **version} and float(ratio[0]["value"][1]) == 0.0
    p95 = wait_until("p95 latency", lambda: prometheus.query(f"{names.RECORD_LATENCY_P95} > 0"))
    assert 0 < float(p95[0]["value"][1]) < 1.0


def test_shifted_inputs_raise_the_drift_alert(scraped: tuple[servingkit.Server, PrometheusServer], housing_model: dict[str, Any]) -> None:
    server, prometheus = scraped
    def drift_alerts() -> list[dict[str, Any]]:
        return [a for a in prometheus.alerts() if a["labels"]["alertname"] == rules.DRIFT_ALERT]

    # Inputs like the training data fill the window (the other test sent one record over and
    # over, which is drift): the gauge reads 0 in Prometheus and no drift alert is active.
    assert server.client.post("/predict", json=_rows(200, seed=5)).status_code == 200
    wait_until("a calm window", lambda: prometheus.query(f"{names.DATA_DRIFT_DETECTED} == 0") and not drift_alerts())

    shifted = pd.DataFrame(_rows(200, seed=6))
    for column in ["median_income", "housing_median_age", "total_rooms", "total_bedrooms", "population", "households"]:
        shifted[column] = shifted[column] * 2.0 + shifted[column].std()
    shifted["ocean_proximity"] = "INLAND"
    assert server.client.post("/predict", json=shifted.to_dict(orient="records")).status_code == 200
    alert = wait_until("ModelshipDataDrift", drift_alerts)[0]
    assert alert["state"] == "pending"
    assert alert["labels"] == {
        "alertname": rules.DRIFT_ALERT, "severity": "warning", "component": "model",
        "namespace": "team-a", names.LABEL_DEPLOYMENT: "housing-prices", "model": housing_model["name"], "version": housing_model["version"], "variant": "canary",
    }
    assert alert["annotations"]["summary"] == f"Input drift on team-a/housing-prices (model {housing_model['name']} version {housing_model['version']}, canary)"
    # The drifted features with their scores, from the per-feature gauges of this version.
    drifted = dict(item.split("=") for item in alert["annotations"][rules.DRIFTED_FEATURES_ANNOTATION].split(", "))
    assert "median_income" in drifted and all(float(score) >= 0.2 for score in drifted.values()), drifted


def test_every_dashboard_query_answers(scraped: tuple[servingkit.Server, PrometheusServer], housing_model: dict[str, Any]) -> None:
    """Each panel's query, with the dashboard's variables set to this namespace and model, returns
    series from the real server (run after the traffic and drift of the tests above)."""
    _, prometheus = scraped
    values = {"$namespace": "team-a", "$model": housing_model["name"], "$__rate_interval": "1m"}
    queries = [expr for _, _, expr, _ in dashboards.panel_queries()] + [expr for _, expr in dashboards.stat_queries()]
    for expr in queries:
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        result = wait_until(f"data for {expr}", lambda expr=expr: prometheus.query(expr))
        assert all(series["metric"].get("version") in (None, housing_model["version"]) for series in result), result
