"""``modelship train`` as a real process against an ``mlflow server`` on 127.0.0.1 (the HTTP
path a training Job takes): personality classification with a random search, then a retrain
that must beat the champion and does not, then bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from trainkit import PERSONALITY, Backend, aliases, snapshot  # type: ignore[import-not-found]
from modelship.api.results import REFERENCE_ARTIFACT

pytestmark = pytest.mark.slow

MODEL = "people-personality"
FEATURES = ["Time_spent_Alone", "Stage_fear", "Social_event_attendance", "Going_outside", "Drained_after_socializing", "Friends_circle_size", "Post_frequency"]


def spec(must_beat_champion: bool = False) -> dict:
    return {
        "task": "classification",
        "dataset": {"uri": PERSONALITY.as_uri(), "target": "Personality"},
        "training": {
            "framework": "xgboost",
            "hyperparameters": {"n_estimators": 40},
            "search": {
                "strategy": "random",
                "maxTrials": 2,
                "cvFolds": 2,
                "space": {"max_depth": [2, 3], "learning_rate": {"distribution": "loguniform", "low": 0.05, "high": 0.3}},
            },
            "qualityGate": {"metric": "accuracy", "threshold": 0.85, "mustBeatChampion": must_beat_champion},
        },
    }


def lineage(generation: str, trigger: str) -> dict[str, str]:
    return {
        "MODELSHIP_DEPLOYMENT": "personality",
        "MODELSHIP_NAMESPACE": "people",
        "MODELSHIP_GENERATION": generation,
        "MODELSHIP_JOB_NAME": f"personality-train-{generation}",
        "MODELSHIP_TRIGGER": trigger,
    }


def test_personality_search_registers_challenger_over_http(mlflow_server: Backend):
    run = mlflow_server.train(spec=spec(), env=lineage("1", "spec"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.result_file.read_text() == run.last_line
    result = run.result
    assert result["outcome"] == "Succeeded" and result["modelName"] == MODEL and result["version"] == "1"
    assert result["metrics"]["accuracy"] >= 0.85 and {"accuracy", "f1Macro", "rocAuc"} <= set(result["metrics"])
    assert "search: trial 1/2" in run.stdout and "search: trial 2/2" in run.stdout and "search: best accuracy=" in run.stdout

    client = mlflow_server.client()
    assert aliases(client, MODEL) == {"challenger": "1"}
    version = client.get_model_version(MODEL, "1")
    assert version.run_id == result["runId"]
    assert {k: v for k, v in version.tags.items() if k != "modelship.io/dataset-hash"} == {
        "modelship.io/deployment": "personality",
        "modelship.io/namespace": "people",
        "modelship.io/generation": "1",
        "modelship.io/job": "personality-train-1",
        "modelship.io/trigger": "spec",
        "modelship.io/dataset-uri": PERSONALITY.as_uri(),
        "modelship.io/gate": "passed",
    }

    import mlflow

    mlflow.set_tracking_uri(mlflow_server.tracking_uri)
    reference = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=str(mlflow_server.workdir)))
    assert list(reference.columns) == FEATURES and len(reference) == 2320  # the training split, under the 5000 cap
    schema = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/feature_schema.json")
    assert schema["classes"] == ["Extrovert", "Introvert"] and schema["task"] == "classification"
    assert {f["name"]: f["categories"] for f in schema["features"] if f["kind"] == "categorical"} == {"Stage_fear": ["No", "Yes"], "Drained_after_socializing": ["No", "Yes"]}
    matrix = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/evaluation/confusion_matrix.json")
    assert matrix["labels"] == ["Extrovert", "Introvert"] and sum(map(sum, matrix["matrix"])) == 580
    run_data = client.get_run(version.run_id).data
    assert run_data.params["search.strategy"] == "random" and "best.max_depth" in run_data.params
    assert "accuracy" in run_data.metrics and "confusion" not in " ".join(run_data.metrics)

    model = mlflow.sklearn.load_model(f"models:/{MODEL}/1")
    answer = model.predict([{"Time_spent_Alone": 10.0, "Stage_fear": "Yes", "Social_event_attendance": 0.0, "Going_outside": 0.0, "Drained_after_socializing": "Yes", "Friends_circle_size": 1.0, "Post_frequency": None}])
    assert answer[0] == "Introvert"


def test_retrain_that_does_not_beat_the_champion_is_registered_without_alias(mlflow_server: Backend):
    client = mlflow_server.client()
    client.set_registered_model_alias(MODEL, "champion", "1")
    # A manual retraining trains even on the champion's very data (drift and schedule would skip it).
    run = mlflow_server.train(spec=spec(must_beat_champion=True), env=lineage("2", "manual"))
    assert run.returncode == 3, run.stdout + run.stderr
    result = run.result
    assert result["outcome"] == "GateFailed" and result["gatePassed"] is False and result["version"] == "2"
    assert "does not beat champion v1" in result["reason"]  # same data, same seed: equal is not better
    assert run.result_file.read_text() == run.last_line
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["modelship.io/gate"] == "failed" and tags["modelship.io/trigger"] == "manual"
    assert aliases(client, MODEL) == {"challenger": "1", "champion": "1"}


def test_unreachable_dataset_over_http_backend_registers_nothing(mlflow_server: Backend):
    client = mlflow_server.client()
    before = snapshot(client, MODEL)
    bad = spec()
    bad["dataset"]["uri"] = "https://127.0.0.1:9/x.csv"
    run = mlflow_server.train(spec=bad, env=lineage("3", "spec"))
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.result == {"outcome": "InvalidInput", "reason": "dataset https://127.0.0.1:9/x.csv is unreachable: connection refused", "modelName": MODEL, "metrics": {}}
    assert snapshot(client, MODEL) == before
