"""The real model server (``modelship serve`` as a process on 127.0.0.1) on a version trained by
``modelship train`` into a real MLflow backend: predictions, validation, metrics, drift,
readiness, and a restart while MLflow is down."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import servingkit
from servingkit import HOUSING_RECORD, metric, parse_metrics

from modelship.monitoring import metrics as names

pytestmark = pytest.mark.slow

SPEC = {
    "serving": {"maxRecordsPerRequest": 300, "batching": {"maxBatchSize": 32, "maxLatencyMs": 20}},
    "monitoring": {"drift": {"method": "psi", "threshold": 0.2, "driftShare": 0.5, "windowSize": 200, "minRows": 50, "interval": "1s"}},
}


@pytest.fixture(scope="module")
def server(housing_model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[servingkit.Server]:
    workdir = tmp_path_factory.mktemp("serve")
    with servingkit.serve(
        workdir,
        housing_model["name"],
        housing_model["version"],
        housing_model["tracking_uri"],
        workdir / "cache",
        spec=SPEC,
        variant="canary",
        extra_args=["--prediction-log", str(workdir / "predictions.jsonl")],
    ) as srv:
        srv.wait_ready()
        srv.workdir = workdir  # type: ignore[attr-defined]
        yield srv


def _housing_rows(n: int, seed: int) -> pd.DataFrame:
    return pd.read_csv(servingkit.HOUSING_CSV).drop(columns=["median_house_value"]).dropna().sample(n, random_state=seed)


def _labels(housing_model: dict[str, Any]) -> dict[str, str]:
    return {"model": housing_model["name"], "version": housing_model["version"], "variant": "canary"}


def test_predictions_match_the_pipeline(server: servingkit.Server, housing_model: dict[str, Any]) -> None:
    pipeline = housing_model["pipeline"]
    one = server.client.post("/predict", json=HOUSING_RECORD, headers={"x-request-id": "req-42"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["predictions"] == pytest.approx(list(pipeline.predict(pd.DataFrame([HOUSING_RECORD]))), rel=1e-5)
    assert body["version"] == housing_model["version"] and body["variant"] == "canary" and body["model"] == "housing"
    assert one.headers["x-model-version"] == housing_model["version"]
    assert one.headers["x-model-variant"] == "canary"
    assert one.headers["x-request-id"] == "req-42"

    frame = _housing_rows(120, seed=1)
    for path, payload in (("/predict", frame.to_dict(orient="records")), ("/predict/batch", {"records": frame.to_dict(orient="records")})):
        many = server.client.post(path, json=payload)
        assert many.status_code == 200, many.text
        np.testing.assert_allclose(many.json()["predictions"], pipeline.predict(frame), rtol=1e-5)


def test_model_description(server: servingkit.Server, housing_model: dict[str, Any]) -> None:
    info = server.client.get("/model").json()
    assert info["name"] == "housing" and info["version"] == housing_model["version"] and info["variant"] == "canary"
    assert info["runId"] == housing_model["result"]["runId"]
    assert info["metrics"]["r2"] == pytest.approx(housing_model["result"]["metrics"]["r2"])
    assert {f["name"] for f in info["schema"]["features"]} == set(HOUSING_RECORD)
    assert info["signature"]["inputs"]
    assert info["predictor"] == "xgboost-booster"


def test_bad_input_is_4xx_with_every_field_and_counted(server: servingkit.Server, housing_model: dict[str, Any]) -> None:
    before = parse_metrics(server.metrics())
    window_before = metric(before, names.DRIFT_WINDOW_ROWS, **_labels(housing_model)) or 0
    bad = {**HOUSING_RECORD, "housing_median_age": "old", "ocean_proximity": "MOON", "colour": "red"}
    del bad["median_income"]
    cases = [
        ("/predict", json.dumps([HOUSING_RECORD, bad]), 422),
        ("/predict", json.dumps({**HOUSING_RECORD, "total_rooms": None}), 422),
        ("/predict", '{"longitude": NaN}', 422),
        ("/predict", '{"longitude": Infinity}', 422),
        ("/predict", "[]", 422),
        ("/predict", "this is not json", 400),
        ("/predict", "17", 400),
        ("/predict", "", 400),
        ("/predict", json.dumps([HOUSING_RECORD] * 301), 413),
        ("/predict/batch", json.dumps([bad]), 422),
    ]
    for path, content, status in cases:
        response = server.client.post(path, content=content, headers={"content-type": "application/json"})
        assert response.status_code == status, (content[:80], response.text)
        assert response.json()["message"]
    response = server.client.post("/predict", json=[HOUSING_RECORD, bad])
    detail = {tuple(item["loc"]): item["msg"] for item in response.json()["detail"]}
    assert set(detail) == {
        ("records", 1, "housing_median_age"),
        ("records", 1, "ocean_proximity"),
        ("records", 1, "colour"),
        ("records", 1, "median_income"),
    }
    assert "NEAR BAY" in detail[("records", 1, "ocean_proximity")]
    assert server.client.post("/predict", json=HOUSING_RECORD).status_code == 200  # still serving

    after = parse_metrics(server.metrics())
    labels = _labels(housing_model)
    invalid = lambda s, e: metric(s, names.PREDICTIONS_TOTAL, outcome="invalid", endpoint=e, **labels) or 0  # noqa: E731
    assert invalid(after, "predict") - invalid(before, "predict") == 10
    assert invalid(after, "batch") - invalid(before, "batch") == 1
    assert (metric(after, names.DRIFT_WINDOW_ROWS, **labels) or 0) == min(200, window_before + 1)


def test_metrics_carry_labels_and_counts(server: servingkit.Server, housing_model: dict[str, Any]) -> None:
    labels = _labels(housing_model)
    before = parse_metrics(server.metrics())
    for _ in range(5):
        assert server.client.post("/predict", json=[HOUSING_RECORD, HOUSING_RECORD]).status_code == 200
    text = server.metrics()
    after = parse_metrics(text)
    success = lambda s: metric(s, names.PREDICTIONS_TOTAL, outcome="success", endpoint="predict", **labels) or 0  # noqa: E731
    assert success(after) - success(before) == 5
    records = lambda s: metric(s, names.PREDICTED_RECORDS_TOTAL, **labels) or 0  # noqa: E731
    assert records(after) - records(before) == 10
    value_count = lambda s: metric(s, names.PREDICTION_VALUE + "_count", **labels) or 0  # noqa: E731
    assert value_count(after) - value_count(before) == 10
    assert metric(after, names.PREDICTION_LATENCY_SECONDS + "_count", endpoint="predict", **labels)
    assert metric(after, names.BATCH_SIZE + "_count", **labels)
    assert metric(after, names.MODEL_READY, **labels) == 1
    assert metric(after, names.MODEL_INFO, run_id=housing_model["result"]["runId"], task="regression", **labels) == 1
    for line in text.splitlines():
        if line.startswith("modelship_") and "{" in line:
            assert 'model="housing"' in line and f'version="{housing_model["version"]}"' in line and 'variant="canary"' in line, line


def _wait_for_evaluation(server: servingkit.Server, labels: dict[str, str], after_count: float, detected: int, timeout: float = 90) -> dict[Any, float]:
    """The metrics once an evaluation after ``after_count`` says ``detected``. The first one to
    end may have started before the rows just sent (the loop runs every second): a later one
    sees them, and a server that never reaches the expected state fails here."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = parse_metrics(server.metrics())
        if (metric(samples, names.DRIFT_EVALUATIONS_TOTAL, outcome="success", **labels) or 0) > after_count and metric(samples, names.DATA_DRIFT_DETECTED, **labels) == detected:
            return samples
        time.sleep(0.5)
    raise TimeoutError(f"no drift evaluation with driftDetected {detected} within {timeout}s:\n{server.log()[-3000:]}")


def test_drift_gauges_follow_the_data(server: servingkit.Server, housing_model: dict[str, Any]) -> None:
    labels = _labels(housing_model)
    # Like the training data: fill the window (windowSize 200) with a fresh sample.
    assert server.client.post("/predict", json=_housing_rows(200, seed=5).to_dict(orient="records")).status_code == 200
    runs = metric(parse_metrics(server.metrics()), names.DRIFT_EVALUATIONS_TOTAL, outcome="success", **labels) or 0
    calm = _wait_for_evaluation(server, labels, runs, detected=0)
    assert metric(calm, names.DRIFT_WINDOW_ROWS, **labels) == 200
    calm_share = metric(calm, names.DRIFTED_FEATURES_SHARE, **labels)
    assert calm_share is not None and calm_share < 0.5

    shifted = _housing_rows(200, seed=6)
    for column in ["median_income", "housing_median_age", "total_rooms", "total_bedrooms", "population", "households"]:
        shifted[column] = shifted[column] * 2.0 + shifted[column].std()
    shifted["ocean_proximity"] = "INLAND"
    for start in range(0, 200, 50):  # several requests, as live traffic would come
        assert server.client.post("/predict", json=shifted.iloc[start : start + 50].to_dict(orient="records")).status_code == 200
    runs = metric(parse_metrics(server.metrics()), names.DRIFT_EVALUATIONS_TOTAL, outcome="success", **labels) or 0
    drifted = _wait_for_evaluation(server, labels, runs, detected=1)
    assert metric(drifted, names.DRIFTED_FEATURES_SHARE, **labels) > calm_share
    assert metric(drifted, names.FEATURE_DRIFTED, feature="median_income", **labels) == 1
    assert metric(drifted, names.FEATURE_DRIFTED, feature="longitude", **labels) == 0
    assert metric(drifted, names.FEATURE_DRIFT_SCORE, feature="median_income", **labels) > 0.2
    assert server.client.get("/model").json()["lastDrift"]["driftDetected"] is True
    # The evaluation a person can read: Evidently's report of the latest window, as HTML.
    report = server.client.get("/drift/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "median_income" in report.text and "Dataset Drift" in report.text


def test_prediction_log(server: servingkit.Server, housing_model: dict[str, Any]) -> None:
    server.client.post("/predict", json=HOUSING_RECORD, headers={"x-request-id": "logged-1"})
    path = server.workdir / "predictions.jsonl"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        entry = next((line for line in lines if line["requestId"] == "logged-1"), None)
        if entry:
            break
        time.sleep(0.2)
    assert entry is not None
    assert entry["inputs"] == [HOUSING_RECORD] and entry["version"] == housing_model["version"] and entry["variant"] == "canary"
    assert len(entry["predictions"]) == 1


def test_schemathesis_finds_no_server_error(server: servingkit.Server) -> None:
    command = [
        str(servingkit.BIN / "schemathesis"), "run", f"{server.url}/docs.json",
        "--url", server.url,
        "--checks", "not_a_server_error",
        "--max-examples", "40",
        "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=servingkit.base_env())
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert server.client.post("/predict", json=HOUSING_RECORD).status_code == 200


def test_readiness_and_restart_with_mlflow_down(tmp_path: Path) -> None:
    """Not ready (503) while MLflow is down and nothing is cached; ready once MLflow is back;
    after a restart with MLflow stopped, ready again from the cache with the same answers."""
    mlflow_server = servingkit.MlflowServer(tmp_path / "mlflow")
    mlflow_server.start()
    try:
        result = servingkit.train(tmp_path / "train", mlflow_server.url, "housing-remote", servingkit.housing_spec(trees=30), local_artifacts=False)
        version = result["version"]
        mlflow_server.stop()
        cache = tmp_path / "cache"
        env = {"MODELSHIP_LOAD_RETRY_SECONDS": "1"}
        with servingkit.serve(tmp_path / "serve1", "housing-remote", "@challenger", mlflow_server.url, cache, extra_env=env) as srv:
            srv.wait_listening()
            time.sleep(2)
            assert srv.client.get("/healthz").status_code == 200
            assert srv.client.get("/readyz").status_code == 503
            refused = srv.client.post("/predict", json=HOUSING_RECORD)
            assert refused.status_code == 503 and refused.json()["error"] == "model_not_ready"
            deadline = time.monotonic() + 60
            while (info := srv.client.get("/model").json())["loadError"] is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert info["ready"] is False and "loading failed" in info["loadError"]
            assert metric(parse_metrics(srv.metrics()), names.PREDICTIONS_TOTAL, outcome="error", variant="champion") == 1
            # Its own metrics only, even with the module's other server running (own BentoML home).
            assert 'model="housing"' not in srv.metrics()
            mlflow_server.start()
            srv.wait_ready(timeout=120)
            first = srv.client.post("/predict", json=HOUSING_RECORD).json()
            assert first["version"] == version
            assert srv.client.get("/model").json()["fromCache"] is False
        mlflow_server.stop()
        with servingkit.serve(tmp_path / "serve2", "housing-remote", "@challenger", mlflow_server.url, cache, extra_env=env) as srv:
            srv.wait_ready(timeout=120)
            again = srv.client.post("/predict", json=HOUSING_RECORD).json()
            assert {**again, "requestId": None} == {**first, "requestId": None}  # a new request, the same answer
            assert srv.client.get("/model").json()["fromCache"] is True
    finally:
        mlflow_server.stop()
