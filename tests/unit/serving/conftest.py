"""Fixtures of the serving unit tests: models trained by the real ``modelship train`` into a
sqlite MLflow backend (the kit lives in tests/serving/servingkit.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
_KIT = Path(__file__).resolve().parents[2] / "serving"
if str(_KIT) not in sys.path:
    sys.path.insert(0, str(_KIT))

import testdata  # noqa: E402
import servingkit  # noqa: E402


@pytest.fixture(scope="session")
def mlflow_backend(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("mlflow-unit")
    return {"workdir": workdir, "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}"}


def _trained(backend: dict[str, Any], name: str, spec: dict[str, Any]) -> dict[str, Any]:
    testdata.require(servingkit.HOUSING_CSV)
    testdata.require(servingkit.PERSONALITY_CSV)
    result = servingkit.train(backend["workdir"], backend["tracking_uri"], name, spec)
    return {**backend, "name": name, "version": result["version"], "result": result}


@pytest.fixture(scope="session")
def housing(mlflow_backend: dict[str, Any]) -> dict[str, Any]:
    return _trained(mlflow_backend, "housing-unit", servingkit.housing_spec(trees=40))


@pytest.fixture(scope="session")
def personality_sklearn(mlflow_backend: dict[str, Any]) -> dict[str, Any]:
    return _trained(mlflow_backend, "personality-lr", servingkit.personality_spec("sklearn", "logisticRegression"))


@pytest.fixture(scope="session")
def personality_xgb(mlflow_backend: dict[str, Any]) -> dict[str, Any]:
    return _trained(mlflow_backend, "personality-xgb", servingkit.personality_spec("xgboost", None))
