"""``modelship train`` as a real process against MLflow on a sqlite file: California housing,
the builtin sample path, and bad input that must leave MLflow's registry untouched."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from trainkit import CALIFORNIA, PERSONALITY, Backend, aliases, snapshot  # type: ignore[import-not-found]
from modelship.api.results import REFERENCE_ARTIFACT, VALIDATION_REPORT_ARTIFACT

pytestmark = pytest.mark.slow

LINEAGE_ENV = {
    "MODELSHIP_DEPLOYMENT": "housing",
    "MODELSHIP_NAMESPACE": "ml",
    "MODELSHIP_GENERATION": "7",
    "MODELSHIP_JOB_NAME": "housing-train-7-abcde",
    "MODELSHIP_TRIGGER": "spec",
}
FEATURES = ["longitude", "latitude", "housing_median_age", "total_rooms", "total_bedrooms", "population", "households", "median_income", "ocean_proximity"]


def california_spec(**training) -> dict:
    return {
        "task": "regression",
        "dataset": {"uri": CALIFORNIA.as_uri(), "target": "median_house_value"},
        "training": {
            "framework": "xgboost",
            "hyperparameters": {"n_estimators": 60, "max_depth": 6, "learning_rate": 0.2},
            "qualityGate": {"metric": "r2", "threshold": 0.7},
            **training,
        },
    }


def test_california_xgboost_is_registered_with_lineage_reference_and_schema(sqlite_backend: Backend):
    run = sqlite_backend.train(spec=california_spec(), env=LINEAGE_ENV)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.result_file.read_text() == run.last_line
    result = run.result
    assert result["outcome"] == "Succeeded" and result["gatePassed"] is True
    assert result["modelName"] == "ml-housing" and result["version"] == "1"
    assert result["metrics"]["r2"] >= 0.7 and {"r2", "rmse", "mae"} <= set(result["metrics"])
    digest = "sha256:" + hashlib.sha256(CALIFORNIA.read_bytes()).hexdigest()
    assert result["datasetHash"] == digest
    for stage in ("load: 20640 rows", "validate: passed", "split: 16512 train / 4128 test", "evaluate: r2=", "gate: passed"):
        assert stage in run.stdout

    client = sqlite_backend.client()
    version = client.get_model_version_by_alias("ml-housing", "challenger")
    assert str(version.version) == "1" and version.run_id == result["runId"]
    assert aliases(client, "ml-housing") == {"challenger": "1"}
    assert version.tags == {
        "modelship.io/deployment": "housing",
        "modelship.io/namespace": "ml",
        "modelship.io/generation": "7",
        "modelship.io/job": "housing-train-7-abcde",
        "modelship.io/trigger": "spec",
        "modelship.io/dataset-uri": CALIFORNIA.as_uri(),
        "modelship.io/dataset-hash": digest,
        "modelship.io/gate": "passed",
    }

    import mlflow

    mlflow.set_tracking_uri(sqlite_backend.tracking_uri)
    reference = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=REFERENCE_ARTIFACT))
    assert list(reference.columns) == FEATURES and len(reference) == 5000
    # Seed 42 puts all 207 rows without total_bedrooms into the held-out split, so the
    # training sample has none; the model still answers them (XGBoost's default branch).
    assert reference["ocean_proximity"].dtype == object and reference["total_bedrooms"].dtype == "float64"
    schema = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/feature_schema.json")
    assert [f["name"] for f in schema["features"]] == FEATURES
    assert schema["features"][-1] == {"name": "ocean_proximity", "kind": "categorical", "categories": ["<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN"]}
    assert schema["task"] == "regression" and schema["classes"] is None
    report = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{VALIDATION_REPORT_ARTIFACT}")
    assert report["passed"] is True and report["columns"]["total_bedrooms"]["missingShare"] == pytest.approx(207 / 20640, abs=1e-6)

    model = mlflow.sklearn.load_model("models:/ml-housing/1")
    record = {"longitude": -122.23, "latitude": 37.88, "housing_median_age": 41.0, "total_rooms": 880.0, "total_bedrooms": None, "population": 322.0, "households": 126.0, "median_income": 8.3252, "ocean_proximity": "NEAR BAY"}
    assert 100_000 < float(model.predict(record)[0]) < 600_000
    assert not (sqlite_backend.workdir / "mlruns").exists()


def test_builtin_sample_path_with_a_manifest(sqlite_backend: Backend, tmp_path: Path):
    manifest = tmp_path / "diabetes.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "diabetes", "namespace": "samples", "generation": 2},
        "spec": {
            "task": "regression",
            "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"},
            "training": {"framework": "sklearn", "estimator": "ridge", "qualityGate": {"metric": "r2", "threshold": 0.3}},
        },
    }))
    run = sqlite_backend.train("-f", str(manifest), "--tracking-uri", sqlite_backend.tracking_uri, "--artifact-location", sqlite_backend.artifact_location)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.result["modelName"] == "samples-diabetes" and run.result["version"] == "1"
    tags = sqlite_backend.client().get_model_version("samples-diabetes", "1").tags
    assert tags["modelship.io/deployment"] == "diabetes" and tags["modelship.io/generation"] == "2"
    assert tags["modelship.io/dataset-uri"] == "builtin:sklearn/diabetes" and tags["modelship.io/dataset-hash"].startswith("sha256:")


def _builtin_samples() -> list[Path]:
    root = Path(__file__).resolve().parents[2] / "manifests" / "samples"
    return sorted(p for p in root.glob("*.yaml") if "builtin:" in p.read_text())


@pytest.mark.parametrize("sample", _builtin_samples() or [None], ids=lambda p: p.name if p else "none")
def test_repo_builtin_samples_train(sqlite_backend: Backend, sample: Path | None):
    if sample is None:
        pytest.skip("no builtin: sample in manifests/samples yet")
    run = sqlite_backend.train("-f", str(sample), "--tracking-uri", sqlite_backend.tracking_uri, "--artifact-location", sqlite_backend.artifact_location)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.result["outcome"] == "Succeeded" and run.result["version"] == "1"


# --- bad input: exit 2, one-line reason, the registry as it was --------------------------

MODEL = "ml-bad"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Backend:
    """A backend where MODEL already has version 1 as challenger and champion."""
    root = tmp_path_factory.mktemp("seeded")
    (root / "artifacts").mkdir()
    backend = Backend(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"), root)
    spec = {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}, "training": {"estimator": "ridge"}}
    run = backend.train("--model-name", MODEL, spec=spec)
    assert run.returncode == 0, run.stdout + run.stderr
    backend.client().set_registered_model_alias(MODEL, "champion", "1")
    return backend


def _synthetic(path: Path, **columns) -> str:
    frame = pd.DataFrame({"a": range(100), "b": [float(i % 7) for i in range(100)], "y": [i * 0.5 for i in range(100)], **columns})
    frame.to_csv(path, index=False)
    return path.as_uri()


BAD = [
    ("missing target", {"dataset": {"uri": PERSONALITY.as_uri(), "target": "Personalty"}, "task": "classification", "training": {"estimator": "randomForest"}}, r"^column 'Personalty' \(target\) not found; columns: Time_spent_Alone, "),
    ("all-NaN column", {"dataset": {"uri": "ALLNAN", "target": "y"}}, r"^column 'empty': all values are missing$"),
    ("non-numeric regression target", {"dataset": {"uri": CALIFORNIA.as_uri(), "target": "ocean_proximity"}}, r"^column 'ocean_proximity' \(target\): not numeric \(e.g. 'NEAR BAY'\), but task is regression$"),
    ("empty file", {"dataset": {"uri": "EMPTY", "target": "y"}}, r"^dataset file://.*/empty.csv is empty$"),
    ("missing file", {"dataset": {"uri": "file:///nonexistent.csv", "target": "y"}}, r"^dataset file:///nonexistent.csv: no such file$"),
    ("unreachable https", {"dataset": {"uri": "https://127.0.0.1:9/x.csv", "target": "y"}}, r"^dataset https://127.0.0.1:9/x.csv is unreachable: connection refused$"),
    ("unknown estimator", {"training": {"estimator": "nosuchpkg.models:Regressor"}}, r"^estimator 'nosuchpkg.models:Regressor': module nosuchpkg is not installed in the training image$"),
    ("unknown hyperparameter", {"training": {"estimator": "randomForest", "hyperparameters": {"n_trees": 5}}}, r"^hyperparameter 'n_trees' is not a parameter of estimator 'randomForest'; valid: .*n_estimators"),
    ("unknown search parameter", {"training": {"estimator": "ridge", "search": {"space": {"depth": [1, 2]}}}}, r"^search.space parameter 'depth' is not a parameter of estimator 'ridge'; valid: alpha, "),
    ("invalid spec", {"training": {"estimator": "ridge", "qualityGate": {"metric": "accuracy", "threshold": 0.9}}}, r"^invalid spec: spec.training.qualityGate.metric: .*accuracy does not suit task regression"),
]


@pytest.mark.parametrize(("case", "override", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_and_leaves_mlflow_unchanged(seeded: Backend, tmp_path: Path, case, override, reason):
    spec = {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}, "training": {"estimator": "ridge"}}
    for key, value in override.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    uri = spec["dataset"]["uri"]
    if uri == "ALLNAN":
        spec["dataset"]["uri"] = _synthetic(tmp_path / "allnan.csv", empty=[None] * 100)
    elif uri == "EMPTY":
        (tmp_path / "empty.csv").write_bytes(b"")
        spec["dataset"]["uri"] = (tmp_path / "empty.csv").as_uri()
    client = seeded.client()
    before = snapshot(client, MODEL)
    run = seeded.train("--model-name", MODEL, spec=spec)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.result_file.read_text() == run.last_line
    result = run.result
    assert result["outcome"] == "InvalidInput"
    assert "version" not in result and "runId" not in result
    import re

    assert re.search(reason, result["reason"]), result["reason"]
    assert "\n" not in result["reason"]
    assert snapshot(client, MODEL) == before == {"aliases": {"challenger": "1", "champion": "1"}, "versions": ["1"], "runs": before["runs"]}


def test_mlflow_down_is_an_error_without_credentials(sqlite_backend: Backend):
    spec = {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}, "training": {"estimator": "ridge"}}
    run = sqlite_backend.train(
        "--model-name", "m",
        spec=spec,
        env={"MLFLOW_TRACKING_URI": "http://alice:s3cret@127.0.0.1:9", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"},
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.result["outcome"] == "Error"
    assert "s3cret" not in run.stdout and "s3cret" not in run.stderr
    assert json.loads(run.result_file.read_text()) == run.result


def test_bad_hyperparameter_value_found_at_fit_is_invalid_input_before_any_run(tmp_path: Path):
    from modelship.api.v1alpha1 import ModelDeploymentSpec
    from modelship.training.entrypoint import Settings, run
    from modelship.training.errors import InvalidInput

    spec = ModelDeploymentSpec.model_validate({"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}, "training": {"framework": "xgboost", "hyperparameters": {"max_depth": -1, "n_estimators": 5}}})
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=str(tmp_path / "a"), model_name="m")
    with pytest.raises(InvalidInput, match=r"^estimator 'xgboost': .*max_depth"):
        run(spec, settings, echo=lambda line: None)
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    assert client.search_registered_models() == []
    assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())



# --- retraining: unchanged data, force, the reason it ran ------------------------------------


def test_a_retraining_on_the_champions_data_bytes_is_skipped_unless_forced(sqlite_backend: Backend, tmp_path: Path):
    spec = {"task": "regression", "dataset": {"uri": "builtin:sklearn/diabetes", "target": "target"}, "training": {"framework": "sklearn", "estimator": "ridge"}}
    client = sqlite_backend.client()
    model = "retrain-diabetes"
    first = sqlite_backend.train("--model-name", model, spec=spec, env={"MODELSHIP_TRIGGER": "spec"})
    assert first.returncode == 0, first.stdout + first.stderr
    client.set_registered_model_alias(model, "champion", first.result["version"])

    for trigger in ("drift", "quality", "schedule"):
        skipped = sqlite_backend.train("--model-name", model, spec=spec, env={"MODELSHIP_TRIGGER": trigger, "MODELSHIP_RETRAIN_REASON": "median_income=0.8"})
        assert skipped.returncode == 0, skipped.stdout + skipped.stderr
        assert skipped.result["outcome"] == "Unchanged" and skipped.result.get("version") is None
        assert f"champion version {first.result['version']}" in skipped.result["reason"] and "force" in skipped.result["reason"]
    assert len(client.search_model_versions(f"name = '{model}'")) == 1, "a skipped retraining registered a version"

    reason = "ModelshipDataDrift on version 1: bmi=0.41, s5=0.3"
    forced = sqlite_backend.train("--model-name", model, "--force", spec=spec, env={"MODELSHIP_TRIGGER": "drift", "MODELSHIP_RETRAIN_REASON": reason})
    assert forced.returncode == 0 and forced.result["outcome"] == "Succeeded", forced.stdout + forced.stderr
    version = client.get_model_version(model, forced.result["version"])
    assert version.tags["modelship.io/trigger"] == "drift" and version.tags["modelship.io/retrain-reason"] == reason
    import mlflow

    mlflow.set_tracking_uri(sqlite_backend.tracking_uri)
    assert mlflow.artifacts.load_dict(f"runs:/{version.run_id}/retrain-trigger.json") == {"trigger": "drift", "reason": reason}
    # A person asking (trigger manual) trains whatever the data.
    manual = sqlite_backend.train("--model-name", model, spec=spec, env={"MODELSHIP_TRIGGER": "manual"})
    assert manual.returncode == 0 and manual.result["outcome"] == "Succeeded", manual.stdout + manual.stderr
