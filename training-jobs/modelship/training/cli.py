"""``modelship train``: the training Job's entrypoint, and the same run locally with ``-f``.

Only light imports here; the training stack (pandas, scikit-learn, XGBoost, MLflow) loads
when the command runs, so ``modelship --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def train(
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="ModelDeployment YAML file (local runs); its metadata gives the deployment, namespace, generation and model name."),
    spec_json: Optional[str] = typer.Option(None, "--spec-json", envvar="MODELSHIP_SPEC", help="The ModelDeployment spec as JSON (set by the operator)."),
    tracking_uri: str = typer.Option(..., "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI, e.g. http://mlflow:5000 or sqlite:///mlflow.db."),
    registry_uri: Optional[str] = typer.Option(None, "--registry-uri", envvar="MLFLOW_REGISTRY_URI", help="MLflow model registry URI; the tracking URI when unset."),
    model_name: Optional[str] = typer.Option(None, "--model-name", envvar="MODELSHIP_MODEL_NAME", help="Registered model name; spec.modelName or <namespace>-<deployment> when unset."),
    deployment: Optional[str] = typer.Option(None, "--deployment", envvar="MODELSHIP_DEPLOYMENT", help="ModelDeployment name (lineage tag modelship.io/deployment)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", envvar="MODELSHIP_NAMESPACE", help="ModelDeployment namespace (lineage tag modelship.io/namespace)."),
    generation: Optional[str] = typer.Option(None, "--generation", envvar="MODELSHIP_GENERATION", help="Spec generation trained (lineage tag modelship.io/generation)."),
    job_name: Optional[str] = typer.Option(None, "--job-name", envvar="MODELSHIP_JOB_NAME", help="Training Job name (lineage tag modelship.io/job; also the MLflow run name)."),
    trigger: Optional[str] = typer.Option(None, "--trigger", envvar="MODELSHIP_TRIGGER", help="Why this training runs: spec, schedule, drift, quality or manual (lineage tag modelship.io/trigger)."),
    retrain_reason: Optional[str] = typer.Option(None, "--retrain-reason", envvar="MODELSHIP_RETRAIN_REASON", help="Why a retraining runs (for drift: the alert's drifted features), logged to the MLflow run (tag modelship.io/retrain-reason, artifact retrain-trigger.json)."),
    force: bool = typer.Option(False, "--force", envvar="MODELSHIP_FORCE", help="Train a schedule or drift retraining even when the data bytes equal the champion's."),
    result_path: str = typer.Option("/dev/termination-log", "--result-path", envvar="MODELSHIP_RESULT_PATH", help="Where the result JSON is written (the pod's termination message); skipped with a note when it cannot be."),
    artifact_location: Optional[str] = typer.Option(None, "--artifact-location", envvar="MODELSHIP_ARTIFACT_LOCATION", help="Artifact location of the experiment when it is created (e.g. s3://bucket/mlflow, or a directory for a sqlite backend)."),
    max_dataset_mb: int = typer.Option(512, "--max-dataset-mb", envvar="MODELSHIP_MAX_DATASET_MB", min=1, help="Largest data set read, in MiB."),
) -> None:
    """Train, evaluate and register a model version (the training Job's entrypoint).

    Exit codes: 0 registered and gate passed (alias challenger); 2 invalid spec or data (nothing registered); 3 quality gate failed (registered, tagged modelship.io/gate=failed, no alias); 1 unexpected error. The last stdout line is the result JSON.
    """
    from modelship.training.entrypoint import main

    code = main(
        file=file,
        spec_json=spec_json,
        tracking_uri=tracking_uri,
        registry_uri=registry_uri,
        model_name=model_name,
        deployment=deployment,
        namespace=namespace,
        generation=generation,
        job=job_name,
        trigger=trigger,
        retrain_reason=retrain_reason,
        force=force,
        result_path=result_path,
        artifact_location=artifact_location,
        max_dataset_mb=max_dataset_mb,
    )
    raise typer.Exit(code)
