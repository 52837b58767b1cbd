"""Live quality for real: a real Prometheus scrapes two real model servers (a classifier and a
regressor) whose predictions land in a real PostgreSQL, evaluates the generated rules, and
raises ModelshipQualityDrop when the classifier is fed wrong labels; every panel of the
dashboard's quality row answers.

The rule file is the generated one with two edits so the test takes seconds, not the rule's
10 minutes: the quality alert's ``for`` is 1 s and the quality recording group runs every
second. The expressions are untouched (``promtool test rules`` covers ``for`` in
tests/monitoring)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import servingkit
import yaml
from servers import PostgresServer, PrometheusServer, wait_until
from servingkit import HOUSING_RECORD

from modelship.api.names import ENV_PREDICTION_STORE_DSN
from modelship.monitoring import dashboards, rules
from modelship.monitoring import metrics as names
from modelship.monitoring.analysis import accuracy_queries, error_queries
from modelship.monitoring.significance import accuracy_from_vectors, errors_from_vectors

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRAPED = {"namespace": "team-q", "pod": "quality-abc"}


def _fast_rules(path: Path) -> Path:
    groups = yaml.safe_load((REPO / rules.RULES_OUTPUTS[0]).read_text())
    for group in groups["groups"]:
        if group["name"] == "modelship.quality.records":
            group["interval"] = "1s"
        for rule in group["rules"]:
            if rule.get("alert") == rules.QUALITY_DROP_ALERT:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(groups))
    return path


def _spec(metric: str, threshold: float) -> dict[str, Any]:
    return {"monitoring": {"feedback": {"enabled": True, "qualityThreshold": {"metric": metric, "threshold": threshold, "minLabels": 10}}}}


@pytest.fixture(scope="module")
def stack(housing_model: dict[str, Any], personality_model: dict[str, Any], postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("quality")
    env = {ENV_PREDICTION_STORE_DSN: postgres.dsn}
    with ExitStack() as stack:
        classifier = stack.enter_context(servingkit.serve(
            workdir / "personality", personality_model["name"], personality_model["version"], personality_model["tracking_uri"], workdir / "cache",
            spec=_spec("accuracy", 0.9), variant="champion", extra_env=env,
        ))
        regressor = stack.enter_context(servingkit.serve(
            workdir / "housing", housing_model["name"], housing_model["version"], housing_model["tracking_uri"], workdir / "cache",
            spec=_spec("mae", 1e9), variant="canary", extra_env=env,
        ))
        classifier.wait_ready()
        regressor.wait_ready()
        prometheus = PrometheusServer(
            workdir / "prometheus", [f"127.0.0.1:{classifier.port}", f"127.0.0.1:{regressor.port}"], [_fast_rules(workdir / "rules.yaml")], SCRAPED,
        ).start()
        stack.callback(prometheus.stop)
        yield {"classifier": classifier, "regressor": regressor, "prometheus": prometheus}


def test_wrong_labels_raise_the_quality_alert(stack: dict[str, Any], personality_model: dict[str, Any], housing_model: dict[str, Any]) -> None:
    classifier, regressor, prometheus = stack["classifier"], stack["regressor"], stack["prometheus"]
    # Prometheus sees the counters at 0 first, so increase() counts every label below.
    wait_until("the threshold series", lambda: prometheus.query(f'{names.QUALITY_THRESHOLD}{{metric="accuracy"}}'))
    wait_until("the labelled series at 0", lambda: prometheus.query(f"{names.LABELLED_PREDICTIONS_TOTAL}"))
    wait_until("the error series at 0", lambda: prometheus.query(f"{names.PREDICTION_ABSOLUTE_ERROR}_count"))
    rows = pd.read_csv(servingkit.PERSONALITY_CSV).dropna().sample(30, random_state=4).drop(columns=["Personality"]).to_dict(orient="records")
    predicted = classifier.client.post("/predict", json=rows).json()
    flip = {"Extrovert": "Introvert", "Introvert": "Extrovert"}
    # 25 wrong labels and 5 right ones: live accuracy 1/6, far under the 0.9 threshold.
    labels = [flip[p] if i < 25 else p for i, p in enumerate(predicted["predictions"])]
    answer = classifier.client.post("/feedback", json=[{"requestId": r, "label": label} for r, label in zip(predicted["recordIds"], labels, strict=True)])
    assert answer.status_code == 200 and answer.json()["stored"] == 30

    # The regressor: true values 100 off each prediction, a MAE of 100 (under its threshold).
    housing = regressor.client.post("/predict", json=[HOUSING_RECORD] * 12).json()
    truth = [{"requestId": r, "value": p + 100.0} for r, p in zip(housing["recordIds"], housing["predictions"], strict=True)]
    assert regressor.client.post("/feedback", json=truth).status_code == 200

    def quality_alerts() -> list[dict[str, Any]]:
        return [a for a in prometheus.alerts() if a["labels"]["alertname"] == rules.QUALITY_DROP_ALERT and a["state"] == "firing"]

    alert = wait_until("ModelshipQualityDrop firing", quality_alerts, timeout=90)[0]
    assert alert["labels"] == {
        "alertname": rules.QUALITY_DROP_ALERT, "severity": "warning", "component": "model", "metric": "accuracy",
        "namespace": "team-q", "model": personality_model["name"], "version": personality_model["version"], "variant": "champion",
    }
    assert float(alert["value"]) == pytest.approx(5 / 30, abs=1e-6)
    accuracy = prometheus.query(names.RECORD_LIVE_ACCURACY)
    assert len(accuracy) == 1 and float(accuracy[0]["value"][1]) == pytest.approx(5 / 30, abs=1e-6)
    mae = wait_until("live MAE", lambda: prometheus.query(f"{names.RECORD_LIVE_MAE} > 0"))
    assert float(mae[0]["value"][1]) == pytest.approx(100.0, abs=0.01) and mae[0]["metric"]["version"] == housing_model["version"]
    assert len(quality_alerts()) == 1, "the regressor's MAE is under its threshold"

    # The A/B significance inputs, from the same real Prometheus.
    accuracy = accuracy_from_vectors(prometheus.query(accuracy_queries("team-q", personality_model["name"])["byOutcome"]))
    assert accuracy["champion"].labelled == pytest.approx(30) and accuracy["champion"].correct == pytest.approx(5)
    queries = error_queries("team-q", housing_model["name"])
    errors = errors_from_vectors(*(prometheus.query(queries[key]) for key in ("count", "sum", "squares")))
    assert errors["canary"].mean == pytest.approx(100.0, abs=0.01) and errors["canary"].variance == pytest.approx(0.0, abs=1.0)


def test_every_quality_panel_answers(stack: dict[str, Any]) -> None:
    """Each panel of the quality row, with the dashboard's variables set, returns series from the
    real servers (after the feedback of the test above)."""
    prometheus = stack["prometheus"]
    values = {"$namespace": "team-q", "$model": ".*", "$__rate_interval": "1m"}
    for _, _, expr, _ in dashboards.quality_panel_queries():
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        wait_until(f"data for {expr}", lambda expr=expr: prometheus.query(expr), timeout=60)


def test_the_operator_reads_each_variants_live_quality(stack: dict[str, Any], personality_model: dict[str, Any], housing_model: dict[str, Any]) -> None:
    """The operator's Prometheus client, which feeds the A/B status, over the same real series
    (after the feedback of the first test): counts per variant, only of the versions asked for,
    and an error (not an exception) when Prometheus is away."""
    import asyncio
    import datetime as dt

    from resources import model_deployment

    from modelship.api.v1alpha1 import ModelDeployment
    from modelship.monitoring.significance import VariantAccuracy
    from modelship.operator.prometheus import PrometheusClient

    now = dt.datetime.now(dt.timezone.utc)
    since = now - dt.timedelta(minutes=15)

    def read(url: str, task: str, model: dict[str, Any], versions: tuple[str, ...]):
        resource = ModelDeployment.model_validate(model_deployment("m", "team-q", task=task, modelName=model["name"]))

        async def ask():
            client = PrometheusClient(url, timeout=5)
            try:
                return await client.quality(resource, versions, since, now)
            finally:
                await client.close()

        return asyncio.run(ask())

    url = stack["prometheus"].url
    accuracy = read(url, "classification", personality_model, (personality_model["version"],))
    assert accuracy.error is None and accuracy.accuracy == {"champion": VariantAccuracy("champion", 5, 30)}
    errors = read(url, "regression", housing_model, (housing_model["version"],))
    assert errors.error is None and set(errors.errors) == {"canary"}
    assert errors.errors["canary"].count == pytest.approx(12) and errors.errors["canary"].mean == pytest.approx(100.0, abs=0.01)
    assert read(url, "classification", personality_model, ("999",)).accuracy == {}
    away = read("http://127.0.0.1:9", "classification", personality_model, ())
    assert away.accuracy == {} and away.error.startswith("Prometheus unreachable")
