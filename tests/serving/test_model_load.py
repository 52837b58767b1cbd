"""ServedModel on versions registered by the real training entrypoint (sqlite MLflow backend):
the lean XGBoost path answers exactly like the pipeline, the pipeline path serves the rest,
and a cached version loads with MLflow out of reach."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import servingkit

from modelship.serving.errors import InvalidInput, MalformedRequest, ModelLoadError, ModelNotReady, TooManyRecords
from modelship.serving.model import ServedModel, reference_records
from modelship.serving.settings import ServingSettings, parse_spec

pytestmark = pytest.mark.slow


def _model(trained: dict[str, Any], cache: Path, version: str | None = None, tracking_uri: str | None = None, spec: dict[str, Any] | None = None) -> ServedModel:
    serving, monitoring = parse_spec(json.dumps(spec or {}))
    settings = ServingSettings(
        model_name=trained["name"],
        model_version=version or trained["version"],
        tracking_uri=tracking_uri or trained["tracking_uri"],
        cache_dir=cache,
        serving=serving,
        monitoring=monitoring,
    )
    model = ServedModel(settings)
    model.load()
    return model


def _predict(model: ServedModel, records: Any) -> dict[str, Any]:
    _, prepared = model.preprocess(json.dumps(records).encode())
    return model.postprocess(model.predict([prepared])[0])


def _sample(csv: Path, target: str, n: int, seed: int = 7) -> pd.DataFrame:
    return pd.read_csv(csv).drop(columns=[target]).dropna().sample(n, random_state=seed)


def test_lean_path_matches_the_pipeline(housing: dict[str, Any], tmp_path: Path) -> None:
    model = _model(housing, tmp_path / "cache", version="@challenger")
    assert model.ready and model.predictor.name == "xgboost-booster"
    assert model.artifacts.version == housing["version"]
    pipeline = servingkit.load_pipeline(housing["tracking_uri"], housing["name"], housing["version"])
    frame = _sample(servingkit.HOUSING_CSV, "median_house_value", 200)
    answer = _predict(model, frame.to_dict(orient="records"))
    np.testing.assert_allclose(answer["predictions"], pipeline.predict(frame), rtol=1e-5)
    assert answer["version"] == housing["version"] and answer["variant"] == "champion"
    single = _predict(model, servingkit.HOUSING_RECORD)
    assert single["predictions"] == pytest.approx(list(pipeline.predict(pd.DataFrame([servingkit.HOUSING_RECORD]))), rel=1e-5)
    info = model.info()
    assert info["metrics"]["r2"] == pytest.approx(housing["result"]["metrics"]["r2"])
    assert [f["name"] for f in info["schema"]["features"]][-1] == "ocean_proximity"


def test_pipeline_path_classifier_with_probabilities(personality_sklearn: dict[str, Any], tmp_path: Path) -> None:
    model = _model(personality_sklearn, tmp_path / "cache")
    assert model.predictor.name == "sklearn-pipeline"
    pipeline = servingkit.load_pipeline(personality_sklearn["tracking_uri"], personality_sklearn["name"], personality_sklearn["version"])
    frame = _sample(servingkit.PERSONALITY_CSV, "Personality", 50)
    answer = _predict(model, frame.to_dict(orient="records"))
    assert answer["predictions"] == list(pipeline.predict(frame))
    expected = pipeline.predict_proba(frame)
    got = np.array([[row[str(c)] for c in pipeline.classes_] for row in answer["probabilities"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert set(answer["probabilities"][0]) == {"Extrovert", "Introvert"}


def test_lean_path_classifier(personality_xgb: dict[str, Any], tmp_path: Path) -> None:
    model = _model(personality_xgb, tmp_path / "cache")
    assert model.predictor.name == "xgboost-booster"
    pipeline = servingkit.load_pipeline(personality_xgb["tracking_uri"], personality_xgb["name"], personality_xgb["version"])
    frame = pd.read_csv(servingkit.PERSONALITY_CSV).drop(columns=["Personality"]).sample(100, random_state=3)
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    answer = _predict(model, records)
    assert answer["predictions"] == list(pipeline.predict(frame))
    got = np.array([[row[str(c)] for c in pipeline.classes_] for row in answer["probabilities"]])
    np.testing.assert_allclose(got, pipeline.predict_proba(frame), atol=1e-5)


def test_bad_requests(housing: dict[str, Any], tmp_path: Path) -> None:
    model = _model(housing, tmp_path / "cache", spec={"serving": {"maxRecordsPerRequest": 3}})
    with pytest.raises(MalformedRequest):
        model.preprocess(b"{not json")
    with pytest.raises(MalformedRequest):
        model.preprocess(b"42")
    with pytest.raises(InvalidInput) as caught:
        model.preprocess(b"[]")
    assert caught.value.detail[0]["loc"] == ["records"]
    with pytest.raises(TooManyRecords):
        model.preprocess(json.dumps([servingkit.HOUSING_RECORD] * 4).encode())
    with pytest.raises(InvalidInput) as caught:
        model.preprocess(json.dumps({"records": [servingkit.HOUSING_RECORD, {**servingkit.HOUSING_RECORD, "median_income": "high", "ocean_proximity": "MOON"}]}).encode())
    assert sorted(tuple(d["loc"]) for d in caught.value.detail) == [("records", 1, "median_income"), ("records", 1, "ocean_proximity")]


def test_cache_hit_without_mlflow(housing: dict[str, Any], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _model(housing, cache, version="@challenger")
    assert not first.artifacts.from_cache
    again = _model(housing, cache, version=housing["version"], tracking_uri="http://127.0.0.1:9")
    assert again.artifacts.from_cache and again.ready
    by_alias = _model(housing, cache, version="@challenger", tracking_uri="http://127.0.0.1:9")
    assert by_alias.artifacts.version == housing["version"] and by_alias.artifacts.from_cache
    assert _predict(again, servingkit.HOUSING_RECORD)["predictions"] == _predict(first, servingkit.HOUSING_RECORD)["predictions"]
    with pytest.raises(ModelLoadError):
        _model(housing, tmp_path / "empty-cache", tracking_uri="http://127.0.0.1:9")


def test_not_ready_before_load(housing: dict[str, Any], tmp_path: Path) -> None:
    settings = ServingSettings(model_name=housing["name"], model_version=housing["version"], tracking_uri=housing["tracking_uri"], cache_dir=tmp_path)
    with pytest.raises(ModelNotReady):
        ServedModel(settings).preprocess(b"{}")


def test_reference_records_round_trip(housing: dict[str, Any], tmp_path: Path) -> None:
    model = _model(housing, tmp_path / "cache")
    records = reference_records(model.reference, model.schema, 20)
    assert len(model.validator.validate(records)) == 20


def test_runtime_counts_and_window(housing: dict[str, Any], tmp_path: Path) -> None:
    from modelship.serving.runtime import ModelRuntime

    serving, monitoring = parse_spec(json.dumps({"monitoring": {"drift": {"minRows": 10, "windowSize": 50, "interval": "1h"}}}))
    settings = ServingSettings(housing["name"], housing["version"], "canary", housing["tracking_uri"], tmp_path / "cache", serving, monitoring, drift_executor="thread")
    runtime = ModelRuntime(settings)
    runtime.model.load()
    runtime._on_loaded()
    try:
        async def main() -> list[Any]:
            good = runtime.predict(json.dumps([servingkit.HOUSING_RECORD] * 3).encode(), "rid-1")
            bad = runtime.predict(json.dumps({**servingkit.HOUSING_RECORD, "median_income": None}).encode(), None)
            return await asyncio.gather(good, bad)

        good, bad = asyncio.run(main())
        assert good.status == 200 and good.headers["x-request-id"] == "rid-1" and good.headers["x-model-variant"] == "canary"
        assert bad.status == 422 and bad.body["detail"][0]["loc"] == ["record", "median_income"]
        assert len(runtime.drift.window) == 3  # the invalid request did not enter the window
        for _ in range(4):
            asyncio.run(runtime.predict(json.dumps([servingkit.HOUSING_RECORD] * 3).encode(), None))
        result = runtime.drift.evaluate_now()
        assert result is not None and result.rows == 15 and result.drift_detected  # one repeated record is not the training data
    finally:
        runtime.close()
