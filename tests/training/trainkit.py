"""Shared pieces of the real-process training tests: data set paths, a ``modelship train``
runner bound to an MLflow backend, and registry snapshots. A module of its own (not the
conftest) so tests import it by a name no other tier uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testdata import CALIFORNIA_HOUSING as CALIFORNIA, DATASETS, PERSONALITY  # noqa: F401  (re-exported for the training tests)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet", "PYTHONUNBUFFERED": "1"}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    result_file: Path

    @property
    def last_line(self) -> str:
        return self.stdout.strip().splitlines()[-1]

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.last_line)


@dataclass
class Backend:
    tracking_uri: str
    artifact_location: str | None
    workdir: Path

    def client(self):
        os.environ.update(QUIET)
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def train(self, *args: str, spec: dict | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> Run:
        """Run ``modelship train`` as its own process; ``spec`` goes in MODELSHIP_SPEC."""
        result_file = self.workdir / f"result-{time.monotonic_ns()}.json"
        environ = {**os.environ, **QUIET, "MLFLOW_TRACKING_URI": self.tracking_uri, "MODELSHIP_RESULT_PATH": str(result_file)}
        if spec is not None:
            environ["MODELSHIP_SPEC"] = json.dumps(spec)
        if self.artifact_location:
            environ["MODELSHIP_ARTIFACT_LOCATION"] = self.artifact_location
        environ.update(env or {})
        completed = subprocess.run(
            [str(BIN / "modelship"), "train", *args],
            cwd=self.workdir,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Run(completed.returncode, completed.stdout, completed.stderr, result_file)


def aliases(client, model_name: str) -> dict[str, str]:
    """Alias → version (as text: the sqlite store answers ints, the REST store strings)."""
    return {alias: str(version) for alias, version in client.get_registered_model(model_name).aliases.items()}


def snapshot(client, model_name: str) -> dict[str, Any]:
    """What a failed training must leave unchanged: versions, aliases, runs."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(model_name)
        aliases = {alias: str(version) for alias, version in model.aliases.items()}
    except MlflowException:
        aliases = None
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{model_name}'"))
    experiments = client.search_experiments()
    runs = sum(len(client.search_runs([e.experiment_id])) for e in experiments)
    return {"aliases": aliases, "versions": versions, "runs": runs}
