"""``modelship serve``: the serving pod's entrypoint (and the same server locally).

Only light imports at the top; BentoML, MLflow and the model stack load when the command runs.
The options become environment variables (:meth:`ServingSettings.to_env`) and BentoML's
production server starts the :class:`modelship.serving.service.ModelService` worker, which
reads them back: the pod and a local run go through the same code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def serve(
    model_name: str = typer.Option(..., "--model-name", envvar="MODELSHIP_MODEL_NAME", help="Registered model name in MLflow."),
    model_version: str = typer.Option(..., "--model-version", envvar="MODELSHIP_MODEL_VERSION", help="Version number to serve, or @alias (e.g. @champion), resolved at start-up."),
    variant: str = typer.Option("champion", "--variant", envvar="MODELSHIP_VARIANT", help="Variant name reported in every response and metric (champion, canary, an A/B arm)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking (and registry) URI, e.g. http://mlflow:5000."),
    spec_json: Optional[str] = typer.Option(None, "--spec-json", envvar="MODELSHIP_SPEC", help="The ModelDeployment spec as JSON; serving reads `serving` and `monitoring` from it (contract defaults when absent)."),
    host: str = typer.Option("0.0.0.0", "--host", envvar="MODELSHIP_HOST", help="Address to bind."),
    port: int = typer.Option(3000, "--port", envvar="MODELSHIP_PORT", min=1, max=65535, help="Port to listen on."),
    cache_dir: Path = typer.Option(Path("~/.cache/modelship/models"), "--cache-dir", envvar="MODELSHIP_MODEL_CACHE", help="Local model cache (keyed by model name and version); a cached version starts without MLflow."),
    prediction_log: Optional[str] = typer.Option(None, "--prediction-log", envvar="MODELSHIP_PREDICTION_LOG", help="Write one JSON line per prediction request to this file (`-` for stdout)."),
) -> None:
    """Serve one registered model version over HTTP (the serving pod's entrypoint).

    POST /predict (one record or a list; adaptive batching), POST /predict/batch, GET /model,
    /healthz, /readyz (503 until the model is loaded), /metrics, /docs.json.
    """
    from modelship.serving.settings import ServingSettings, normalize_version, parse_spec

    try:
        serving, monitoring = parse_spec(spec_json or "")
        settings = ServingSettings(
            model_name=model_name,
            model_version=normalize_version(model_version),
            variant=variant,
            tracking_uri=tracking_uri,
            cache_dir=cache_dir.expanduser().resolve(),
            serving=serving,
            monitoring=monitoring,
            prediction_log=str(Path(prediction_log).resolve()) if prediction_log and prediction_log != "-" else prediction_log,
            **_env_extras(),
        )
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        from pydantic import ValidationError

        from modelship.api import format_errors

        lines = format_errors(error, root="spec") if isinstance(error, ValidationError) else [str(error)]
        for line in lines:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    os.environ.update(settings.to_env())
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see modelship.serving.service
    run_server(host, port)


def _env_extras() -> dict[str, object]:
    from modelship.api.names import ENV_PREDICTION_STORE_BUFFER, ENV_PREDICTION_STORE_DSN
    from modelship.serving.settings import ENV_DRIFT_EXECUTOR, ENV_LOAD_RETRY, ENV_MODEL_THREADS

    extras: dict[str, object] = {}
    if os.environ.get(ENV_DRIFT_EXECUTOR):
        extras["drift_executor"] = os.environ[ENV_DRIFT_EXECUTOR]
    if os.environ.get(ENV_LOAD_RETRY):
        extras["load_retry_seconds"] = float(os.environ[ENV_LOAD_RETRY])
    if os.environ.get(ENV_MODEL_THREADS):
        extras["model_threads"] = int(os.environ[ENV_MODEL_THREADS])
    # The prediction store's DSN only ever comes from the environment: a flag would show the
    # password in the process list.
    if os.environ.get(ENV_PREDICTION_STORE_DSN):
        extras["store_dsn"] = os.environ[ENV_PREDICTION_STORE_DSN]
    if os.environ.get(ENV_PREDICTION_STORE_BUFFER):
        extras["store_buffer_rows"] = int(os.environ[ENV_PREDICTION_STORE_BUFFER])
    return extras


def run_server(host: str, port: int) -> None:
    """BentoML's production HTTP server for the model service; blocks until stopped.

    BentoML keeps its Prometheus multiprocess directory under ``BENTOML_HOME`` and wipes it
    when a server starts, so two servers sharing a home (several versions run locally, tests,
    the integration pod runner) would erase and mix each other's metrics. Unless
    ``BENTOML_HOME`` is set, each server gets its own, removed when it stops.
    """
    import shutil
    import tempfile

    own_home = None
    if not os.environ.get("BENTOML_HOME"):
        own_home = tempfile.mkdtemp(prefix="modelship-bentoml-")
        os.environ["BENTOML_HOME"] = own_home
    try:
        import bentoml

        bentoml.serve("modelship.serving.service:ModelService", host=host, port=port, working_dir=os.getcwd(), blocking=True)
    finally:
        if own_home:
            shutil.rmtree(own_home, ignore_errors=True)
