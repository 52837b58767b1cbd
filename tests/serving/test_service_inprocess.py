"""The BentoML service in-process through a test client (no server process): routes, readiness
from ``__is_ready__``, the Modelship series, and the OpenAPI document."""

from __future__ import annotations

import time
from typing import Any

import pytest
import servingkit
from starlette.testclient import TestClient

pytestmark = pytest.mark.slow


@pytest.fixture()
def client(housing: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MODELSHIP_MODEL_NAME", housing["name"])
    monkeypatch.setenv("MODELSHIP_MODEL_VERSION", housing["version"])
    monkeypatch.setenv("MODELSHIP_VARIANT", "blue")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", housing["tracking_uri"])
    monkeypatch.setenv("MODELSHIP_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELSHIP_SPEC", '{"monitoring": {"drift": {"enabled": false}}}')
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    from modelship.serving.service import ModelService

    with TestClient(ModelService.to_asgi()) as test_client:
        yield test_client


def test_service_routes(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "model never became ready"
        time.sleep(0.2)
    answer = client.post("/predict", json=servingkit.HOUSING_RECORD)
    assert answer.status_code == 200 and answer.json()["variant"] == "blue"
    bad = client.post("/predict", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"] == "malformed_request"
    assert client.get("/model").json()["variant"] == "blue"
    # In-process there is no multiprocess directory (that path is tested with the real server in
    # tests/serving): /metrics serves this process's registry.
    metrics = client.get("/metrics").text
    assert 'modelship_predictions_total{endpoint="predict",model="housing-unit",outcome="success",traffic="live",variant="blue"' in metrics
    paths = client.get("/docs.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/model", "/readyz"} <= set(paths)
