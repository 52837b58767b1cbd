"""Test kit for the model server: train with the real ``modelship train``, run a real MLflow
server and a real ``modelship serve`` as processes on 127.0.0.1, and stop what we started."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from testdata import CALIFORNIA_HOUSING as HOUSING_CSV, DATASETS, PERSONALITY as PERSONALITY_CSV  # noqa: F401  (re-exported for the serving tests)
from servers import MlflowServer, free_port, stop_process  # noqa: F401  (re-exported for the serving tests)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODELSHIP = str(BIN / "modelship")

HOUSING_RECORD: dict[str, Any] = {
    "longitude": -122.23,
    "latitude": 37.88,
    "housing_median_age": 41.0,
    "total_rooms": 880.0,
    "total_bedrooms": 129.0,
    "population": 322.0,
    "households": 126.0,
    "median_income": 8.3252,
    "ocean_proximity": "NEAR BAY",
}


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["BENTOML_DO_NOT_TRACK"] = "true"
    env["DO_NOT_TRACK"] = "true"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    # MLflow's set_tracking_uri/set_registry_uri export these; a child must get its URIs from its arguments.
    for name in ("PROMETHEUS_MULTIPROC_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)
    return env


def housing_spec(trees: int = 60, depth: int = 6, **extra: Any) -> dict[str, Any]:
    spec = {
        "task": "regression",
        "dataset": {"uri": HOUSING_CSV.as_uri(), "target": "median_house_value"},
        "training": {"framework": "xgboost", "hyperparameters": {"n_estimators": trees, "max_depth": depth}},
    }
    spec.update(extra)
    return spec


def personality_spec(framework: str = "sklearn", estimator: str | None = "logisticRegression") -> dict[str, Any]:
    training: dict[str, Any] = {"framework": framework}
    if estimator:
        training["estimator"] = estimator
    if framework == "xgboost":
        training["hyperparameters"] = {"n_estimators": 40, "max_depth": 4}
    return {
        "task": "classification",
        "dataset": {"uri": PERSONALITY_CSV.as_uri(), "target": "Personality"},
        "training": training,
    }


def train(workdir: Path, tracking_uri: str, model_name: str, spec: dict[str, Any], timeout: float = 600, local_artifacts: bool = True) -> dict[str, Any]:
    """Run the real training entrypoint; its result JSON (version, run id, metrics).

    ``local_artifacts`` puts the experiment's artifacts in ``workdir/artifacts`` (sqlite
    backends); with an MLflow server, False leaves them to the server's artifact proxy."""
    workdir.mkdir(parents=True, exist_ok=True)
    result_path = workdir / f"result-{model_name}-{time.monotonic_ns()}.json"
    command = [
        MODELSHIP, "train",
        "--spec-json", json.dumps(spec),
        "--tracking-uri", tracking_uri,
        "--model-name", model_name,
        *(["--artifact-location", str(workdir / "artifacts")] if local_artifacts else []),
        "--result-path", str(result_path),
    ]
    done = subprocess.run(command, cwd=workdir, env=base_env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"modelship train exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(result_path.read_text())


def load_pipeline(tracking_uri: str, name: str, version: str) -> Any:
    """The registered pipeline, without touching MLflow's process-wide URIs."""
    import tempfile

    import mlflow.artifacts
    import mlflow.sklearn
    from mlflow.tracking import MlflowClient

    source = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version_download_uri(name, version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tempfile.mkdtemp(prefix="pipeline-"), tracking_uri=tracking_uri)
    return mlflow.sklearn.load_model(local)


class Server:
    """A ``modelship serve`` process on 127.0.0.1."""

    def __init__(self, log_path: Path, process: subprocess.Popen[Any], port: int) -> None:
        self.log_path = log_path
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_listening(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                self.client.get("/healthz", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise TimeoutError(f"server did not listen within {timeout}s:\n{self.log()[-4000:]}")

    def wait_ready(self, timeout: float = 120) -> None:
        self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.log()[-4000:]}")
            if self.client.get("/readyz", timeout=5).status_code == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"model not ready within {timeout}s:\n{self.log()[-4000:]}")

    def metrics(self) -> str:
        return self.client.get("/metrics").text

    def stop(self) -> None:
        self.client.close()
        stop_process(self.process, 20)


@contextlib.contextmanager
def serve(
    workdir: Path,
    model_name: str,
    version: str,
    tracking_uri: str | None,
    cache_dir: Path,
    spec: dict[str, Any] | None = None,
    variant: str = "champion",
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> Iterator[Server]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    command = [
        MODELSHIP, "serve",
        "--model-name", model_name,
        "--model-version", version,
        "--variant", variant,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--cache-dir", str(cache_dir),
        *(["--tracking-uri", tracking_uri] if tracking_uri else []),
        *(["--spec-json", json.dumps(spec)] if spec else []),
        *(extra_args or []),
    ]
    env = base_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra_env or {})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(log_path, process, port)
    try:
        yield server
    finally:
        server.stop()


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text → {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    wanted = set(labels.items())
    for (sample_name, sample_labels), value in samples.items():
        if sample_name == name and wanted <= set(sample_labels):
            return value
    return None
