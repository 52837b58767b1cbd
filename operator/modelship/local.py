"""``modelship run``: train and serve a ModelDeployment on this machine with the very
entrypoints the pods run (``modelship train``, then ``modelship serve``), against a local MLflow
backend, and print one prediction. The newcomer's first command and a smoke test of the whole
slice without a cluster."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import typer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the model server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the model server was not ready within {timeout:.0f}s")


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _example_record(uri: str, target: str, features: list[str] | None) -> dict[str, Any]:
    from modelship.training.datasets import load_dataset

    frame = load_dataset(uri).frame
    columns = features or [c for c in frame.columns if c != target]
    return {column: _json_value(frame.iloc[0][column]) for column in columns}


def _post(url: str, payload: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def run(
    file: Path = typer.Option(..., "-f", "--file", help="ModelDeployment YAML file."),
    workdir: Path = typer.Option(Path(".modelship"), "--workdir", help="Holds the local MLflow backend (sqlite), artifacts and the model cache."),
    port: int = typer.Option(0, "--port", help="Port of the local model server on 127.0.0.1; a free one when 0."),
    keep_serving: bool = typer.Option(False, "--keep-serving", help="Leave the model server running until Ctrl-C."),
) -> None:
    """Train and serve a ModelDeployment locally with the pods' entrypoints, then print a prediction."""
    from modelship.api.results import TrainingOutcome, TrainingResult
    from modelship.cli import load_model_deployment

    resource = load_model_deployment(file)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result_path = workdir / "last-result.json"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true"}
    cli = [sys.executable, "-m", "modelship.cli_main"]

    typer.secho(f"==> modelship train -f {file}  (MLflow: {tracking_uri})", bold=True)
    trained = subprocess.run(
        [*cli, "train", "-f", str(file), "--tracking-uri", tracking_uri, "--result-path", str(result_path), "--artifact-location", (workdir / "artifacts").as_uri()],
        env=env,
    )
    if not result_path.exists():
        typer.secho(f"training exited with code {trained.returncode} and wrote no result", fg="red", err=True)
        raise typer.Exit(trained.returncode or 1)
    result = TrainingResult.model_validate_json(result_path.read_text())
    if result.outcome != TrainingOutcome.succeeded:
        typer.secho(f"training {result.outcome.value}: {result.reason}", fg="red", err=True)
        raise typer.Exit(trained.returncode or 1)

    port = port or _free_port()
    base = f"http://127.0.0.1:{port}"
    typer.secho(f"==> modelship serve {result.model_name} version {result.version} on {base}", bold=True)
    server = subprocess.Popen(
        [
            *cli, "serve",
            "--model-name", result.model_name or resource.registered_model_name,
            "--model-version", str(result.version),
            "--tracking-uri", tracking_uri,
            "--spec-json", json.dumps(resource.spec.to_wire()),
            "--host", "127.0.0.1", "--port", str(port),
            "--cache-dir", str(workdir / "model-cache"),
        ],
        env=env,
        start_new_session=True,
    )
    try:
        _wait_ready(f"{base}/readyz", server, timeout=180)
        record = _example_record(resource.spec.dataset.uri, resource.spec.dataset.target, resource.spec.dataset.features)
        answer = _post(f"{base}/predict", record)
        typer.secho("==> POST /predict", bold=True)
        typer.echo(f"request:  {json.dumps(record)}")
        typer.echo(f"response: {json.dumps(answer)}")
        if keep_serving:
            typer.echo(f"serving on {base} (docs at {base}/docs); Ctrl-C stops it")
            server.wait()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError, urllib.error.URLError) as error:
        typer.secho(f"serving failed: {error}", fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        if server.poll() is None:
            # The server stops its own workers and drift process; the group kill is a fallback.
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
