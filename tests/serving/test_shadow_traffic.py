"""Shadow traffic for real: a real ``modelship serve`` (with its prediction store on a real
PostgreSQL and its drift window) takes user requests and copies marked the way Envoy marks a
mirrored request (Host ending in ``-shadow``); ``/metrics`` counts them apart, only user requests
reach the drift window and the store, and a real Prometheus evaluating the generated rules
counts only user traffic while the canary analysis's queries can still measure the copies."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import servingkit
import yaml
from servers import PostgresServer, PrometheusServer, wait_until
from servingkit import HOUSING_RECORD, metric, parse_metrics

from modelship.api.names import ENV_PREDICTION_STORE_DSN
from modelship.monitoring import analysis, rules
from modelship.monitoring import metrics as names

pytestmark = pytest.mark.slow

#: The Host of a mirrored copy as Envoy writes it (the route's host with ``-shadow`` before the port).
SHADOW_HOST = "housing.team-a.example-shadow:8080"
LIVE_HOST = "housing.team-a.example:8080"
FEEDBACK = {"monitoring": {"feedback": {"enabled": True, "retention": "24h"}}}


@pytest.fixture(scope="module")
def served(housing_model: dict[str, Any], postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[servingkit.Server, PrometheusServer]]:
    workdir = tmp_path_factory.mktemp("shadow-traffic")
    # The generated rules, evaluated every second instead of every 30 s.
    rule_file = workdir / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules.rule_groups(records_interval="1s"), sort_keys=False))
    with servingkit.serve(
        workdir, housing_model["name"], housing_model["version"], housing_model["tracking_uri"], workdir / "cache", spec=FEEDBACK, variant="canary",
        extra_env={ENV_PREDICTION_STORE_DSN: postgres.dsn},
    ) as server:
        server.wait_ready()
        prometheus = PrometheusServer(workdir / "prometheus", [f"127.0.0.1:{server.port}"], [rule_file], {"namespace": "team-a", "pod": "housing-v1"}).start()
        try:
            yield server, prometheus
        finally:
            prometheus.stop()


def _post(server: servingkit.Server, host: str, request_id: str) -> httpx.Response:
    answer = server.client.post("/predict", json=HOUSING_RECORD, headers={"host": host, "x-request-id": request_id})
    assert answer.status_code == 200, answer.text
    return answer


def _requests(server: servingkit.Server, traffic: str) -> float:
    return metric(parse_metrics(server.client.get("/metrics").text), names.PREDICTIONS_TOTAL, traffic=traffic, outcome=names.OUTCOME_SUCCESS, endpoint="predict") or 0.0


def test_mirrored_copies_are_counted_apart_and_stored_nowhere(served: tuple[servingkit.Server, PrometheusServer], postgres: PostgresServer, housing_model: dict[str, Any]) -> None:
    server, _ = served
    live_before, shadow_before = _requests(server, names.TRAFFIC_LIVE), _requests(server, names.TRAFFIC_SHADOW)
    window_before = server.client.get("/model").json()["driftWindowRows"]
    # Envoy's copy carries the user's x-request-id and may arrive first: the store must keep the
    # user's prediction, never the copy's.
    for i in range(5):
        _post(server, SHADOW_HOST, f"pair-{i}")
        _post(server, LIVE_HOST, f"pair-{i}")
    for i in range(7):
        _post(server, SHADOW_HOST, f"shadow-only-{i}")
    _post(server, "127.0.0.1", "no-port")  # a plain Host is a user's

    text = server.client.get("/metrics").text
    assert _requests(server, names.TRAFFIC_LIVE) - live_before == 6
    assert _requests(server, names.TRAFFIC_SHADOW) - shadow_before == 12
    samples = parse_metrics(text)
    assert metric(samples, names.PREDICTION_LATENCY_SECONDS + "_count", traffic=names.TRAFFIC_SHADOW, endpoint="predict") >= 12
    assert metric(samples, names.PREDICTED_RECORDS_TOTAL, traffic=names.TRAFFIC_SHADOW) >= 12
    assert server.client.get("/model").json()["driftWindowRows"] - window_before == 6
    assert f"first mirrored request (Host {SHADOW_HOST!r})" in server.log()

    stored = wait_until(
        "the user's predictions in the store",
        lambda: (rows := postgres.query("SELECT record_id FROM modelship_predictions WHERE model = %s AND record_id LIKE 'pair-%%'", (housing_model["name"],))) and len(rows) == 5 and rows,
        timeout=20,
    )
    assert sorted(r[0] for r in stored) == [f"pair-{i}" for i in range(5)]
    assert postgres.query("SELECT count(*) FROM modelship_predictions WHERE model = %s AND record_id LIKE 'shadow-only-%%'", (housing_model["name"],))[0][0] == 0
    refused = server.client.post("/feedback", json={"requestId": "shadow-only-0", "value": 1.0})
    assert refused.status_code == 404 and refused.json()["error"] == "unknown_request_id", refused.text
    assert server.client.post("/feedback", json={"requestId": "pair-0", "value": 1.0}).status_code == 200


def test_the_generated_rules_count_only_user_traffic(served: tuple[servingkit.Server, PrometheusServer], housing_model: dict[str, Any]) -> None:
    server, prometheus = served
    model, version = housing_model["name"], housing_model["version"]
    stop = threading.Event()
    rates = {names.TRAFFIC_SHADOW: 20.0, names.TRAFFIC_LIVE: 0.0}

    def drive() -> None:
        sent = 0
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                for traffic, rate in rates.items():
                    if rate:
                        for _ in range(int(rate // 4)):
                            sent += 1
                            client.post("/predict", json=HOUSING_RECORD, headers={"host": SHADOW_HOST if traffic == names.TRAFFIC_SHADOW else LIVE_HOST})
                stop.wait(max(0.25 - (time.monotonic() - started), 0))

    def value(expr: str) -> float | None:
        answer = prometheus.query(expr)
        return float(answer[0]["value"][1]) if answer else None

    live_rate = f'{names.RECORD_REQUEST_RATE}{{namespace="team-a", outcome="success"}}'
    # The same rate straight from the raw series, per kind of traffic, to compare the rule with.
    raw_rate = f'sum(rate({names.PREDICTIONS_TOTAL}{{namespace="team-a", outcome="success", {names.LABEL_TRAFFIC}=~"%s"}}[1m]))'
    error_ratio = f"{names.RECORD_ERROR_RATIO}{{namespace='team-a'}}"
    shadow_count = analysis.requests_query("team-a", model, version, "20s", names.TRAFFIC_SHADOW)
    user_count = analysis.requests_query("team-a", model, version, "20s", names.TRAFFIC_LIVE)
    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        # Only mirrored copies for a while: the analysis's shadow query sees them, the user
        # figures (recording rules, the live query) stay at zero.
        wait_until("mirrored copies in Prometheus", lambda: (value(shadow_count) or 0) >= 50, timeout=60)
        time.sleep(3)  # a few rule evaluations after those scrapes
        # The previous test's few user requests may have been scraped as an increase: their 1 m
        # window has to pass. A rule counting the copies never reaches 0 (≈ 20/s flow all along).
        wait_until(
            "the user figures at zero while only copies flow",
            lambda: value(live_rate) == 0.0 and value(user_count) == 0.0 and value(error_ratio) is None,  # no user request: no ratio
            timeout=120,
        )
        # User requests join at a quarter of the copies' rate: the rule follows them alone.
        rates[names.TRAFFIC_LIVE] = 4.0
        wait_until("user requests in the recording rule", lambda: (value(live_rate) or 0) > 0, timeout=60)
        time.sleep(20)  # a full analysis window of both
        shadow, live = value(shadow_count), value(user_count)
        rate, user_only, everything = value(live_rate), value(raw_rate % names.TRAFFIC_LIVE), value(raw_rate % ".*")
        assert shadow is not None and live is not None and rate is not None and user_only and everything
        assert live < shadow / 2, (live, shadow)
        # The rule follows the user requests alone (evaluated up to a second before this query),
        # however fast a loaded machine answers: not the ≈ 6x larger rate of everything answered.
        assert abs(rate - user_only) <= 0.25 * user_only, (rate, user_only)
        assert rate < everything / 2, (rate, everything)
        assert value(error_ratio) == 0.0
        assert (value(f"{names.RECORD_LATENCY_P95}{{namespace='team-a'}}") or 0) > 0
    finally:
        stop.set()
        driver.join(10)
