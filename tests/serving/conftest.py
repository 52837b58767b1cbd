"""Fixtures of the model-server tests: real processes on 127.0.0.1 (see servingkit)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

import testdata
import servingkit
from servers import PostgresServer

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


@pytest.fixture(scope="session")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("mlflow-serving")
    return {"workdir": workdir, "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}"}


@pytest.fixture(scope="session")
def housing_model(sqlite_backend: dict[str, Any]) -> dict[str, Any]:
    testdata.require(servingkit.HOUSING_CSV)
    result = servingkit.train(sqlite_backend["workdir"], sqlite_backend["tracking_uri"], "housing", servingkit.housing_spec(trees=60))
    pipeline = servingkit.load_pipeline(sqlite_backend["tracking_uri"], "housing", result["version"])
    return {**sqlite_backend, "name": "housing", "version": result["version"], "result": result, "pipeline": pipeline}


@pytest.fixture(scope="session")
def personality_model(sqlite_backend: dict[str, Any]) -> dict[str, Any]:
    testdata.require(servingkit.PERSONALITY_CSV)
    result = servingkit.train(sqlite_backend["workdir"], sqlite_backend["tracking_uri"], "personality", servingkit.personality_spec("sklearn", "logisticRegression"))
    return {**sqlite_backend, "name": "personality", "version": result["version"], "result": result}


@pytest.fixture(scope="session")
def mlflow_backend(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A backend of its own for the model-loading tests: their ``@challenger`` must be theirs."""
    workdir = tmp_path_factory.mktemp("mlflow-model-load")
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


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 for the prediction store, removed afterwards."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()
