"""MLflow: the experiment, the run and its artifacts, the registered version, tags and alias.

One experiment per registered model name. Nothing is written to MLflow before the model is
trained and evaluated: bad input leaves tracking and registry untouched. A version that fails
the quality gate IS registered (so people can inspect it) with ``modelship.io/gate=failed``
and no alias; a version that passes gets the alias ``challenger``. The operator moves
``champion`` after the rollout; training never touches it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import PurePosixPath
from typing import Any

from modelship.api.results import (
    CHALLENGER_ALIAS as CHALLENGER,
    CHAMPION_ALIAS as CHAMPION,
    FEATURE_SCHEMA_ARTIFACT,
    LINEAGE_TAG_PREFIX as TAG_PREFIX,
    MODEL_ARTIFACT,
    REFERENCE_ARTIFACT,
    VALIDATION_REPORT_ARTIFACT,
)

CONFUSION_ARTIFACT = "evaluation/confusion_matrix.json"
#: Why a retraining ran (trigger and the drift summary), in retraining runs only.
RETRAIN_TRIGGER_ARTIFACT = "retrain-trigger.json"
CV_RESULTS_ARTIFACT = "search/cv_results.json"
#: Most rows kept in the reference sample that drift detection compares live inputs against.
REFERENCE_MAX_ROWS = 5000
_QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet"}


@dataclass
class Lineage:
    """Who asked for this version and from which data; becomes ``modelship.io/*`` tags."""

    deployment: str | None = None
    namespace: str | None = None
    generation: str | None = None
    job: str | None = None
    trigger: str | None = None
    dataset_uri: str | None = None
    dataset_hash: str | None = None
    #: Why a retraining ran (the drift summary that triggered it).
    retrain_reason: str | None = None

    def tags(self, gate_passed: bool | None = None) -> dict[str, str]:
        values = {
            "deployment": self.deployment,
            "namespace": self.namespace,
            "generation": self.generation,
            "job": self.job,
            "trigger": self.trigger,
            "dataset-uri": self.dataset_uri,
            "dataset-hash": self.dataset_hash,
            "retrain-reason": self.retrain_reason,
            "gate": None if gate_passed is None else ("passed" if gate_passed else "failed"),
        }
        return {TAG_PREFIX + k: str(v) for k, v in values.items() if v not in (None, "")}


@dataclass
class Recorded:
    run_id: str
    version: str
    model_uri: str
    alias: str | None


@dataclass
class RunContent:
    """Everything logged in the run of one version."""

    pipeline: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    report: dict[str, Any]
    schema: dict[str, Any]
    reference: Any  #: DataFrame of raw training features
    example: Any  #: a few raw rows (input example and signature)
    confusion: dict[str, Any] | None = None
    cv_results: list[dict[str, Any]] | None = None
    extra_metrics: dict[str, float] = field(default_factory=dict)


def quiet_mlflow() -> None:
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)


def connect(tracking_uri: str, registry_uri: str | None = None) -> Any:
    """A client bound to the URIs (also set for the fluent API); checks MLflow answers."""
    quiet_mlflow()
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    client.search_experiments(max_results=1)
    return client


def champion(client: Any, model_name: str) -> Any | None:
    """The model version the ``champion`` alias names, or None without one."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as error:
        if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise


def champion_dataset_hash(client: Any, model_name: str) -> tuple[str | None, str | None]:
    """The champion's version and the hash of the data it was trained on (its lineage tag)."""
    version = champion(client, model_name)
    if version is None:
        return None, None
    return version.version, (version.tags or {}).get(TAG_PREFIX + "dataset-hash")


def champion_metric(client: Any, model_name: str, metric: str) -> tuple[str | None, float | None]:
    """The champion's version and its run's value of ``metric``; (None, None) without a champion."""
    version = champion(client, model_name)
    if version is None:
        return None, None
    if not version.run_id:
        return version.version, None
    return version.version, client.get_run(version.run_id).data.metrics.get(metric)


def ensure_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def reference_sample(features: Any, seed: int, max_rows: int = REFERENCE_MAX_ROWS) -> Any:
    """At most ``max_rows`` rows of raw training features, sampled with the seed."""
    if len(features) <= max_rows:
        return features.reset_index(drop=True)
    return features.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def pip_requirements(lean: bool) -> list[str]:
    """Pinned requirements of the pipeline (given, so MLflow does not infer them in a subprocess)."""
    names = ["scikit-learn", "pandas", "numpy", "cloudpickle"]
    if lean:
        names.append("xgboost-cpu" if _installed("xgboost-cpu") else "xgboost")
    return [f"{name}=={metadata.version(name)}" for name in names if _installed(name)]


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def record(
    client: Any,
    model_name: str,
    experiment_id: str,
    run_name: str | None,
    content: RunContent,
    lineage: Lineage,
    gate_passed: bool,
    lean: bool,
) -> Recorded:
    """Log the run, register the version with lineage tags, set ``challenger`` if the gate passed."""
    import mlflow
    from mlflow.models import infer_signature

    tags = lineage.tags(gate_passed)
    predictions = content.pipeline.predict(content.example)
    signature = infer_signature(content.example, predictions)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags={**tags, TAG_PREFIX + "model-name": model_name}) as run:
        mlflow.log_params({k: _param(v) for k, v in content.params.items()})
        mlflow.log_metrics({**content.metrics, **content.extra_metrics})
        mlflow.log_dict(content.report, VALIDATION_REPORT_ARTIFACT)
        mlflow.log_dict(content.schema, FEATURE_SCHEMA_ARTIFACT)
        if lineage.retrain_reason:
            mlflow.log_dict({"trigger": lineage.trigger, "reason": lineage.retrain_reason}, RETRAIN_TRIGGER_ARTIFACT)
        if content.confusion is not None:
            mlflow.log_dict(content.confusion, CONFUSION_ARTIFACT)
        if content.cv_results is not None:
            mlflow.log_dict(content.cv_results, CV_RESULTS_ARTIFACT)
        reference = PurePosixPath(REFERENCE_ARTIFACT)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, reference.name)
            content.reference.to_parquet(path, index=False)
            mlflow.log_artifact(path, artifact_path=str(reference.parent))
        info = mlflow.sklearn.log_model(
            content.pipeline,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=content.example,
            pip_requirements=pip_requirements(lean),
            serialization_format="cloudpickle",
            metadata={"feature_schema": content.schema},
        )
        run_id = run.info.run_id
    version = mlflow.register_model(info.model_uri, model_name, tags=tags)
    alias = None
    if gate_passed:
        client.set_registered_model_alias(model_name, CHALLENGER, version.version)
        alias = CHALLENGER
    return Recorded(run_id=run_id, version=str(version.version), model_uri=f"models:/{model_name}/{version.version}", alias=alias)


def _param(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, sort_keys=True)[:6000]
    return value
