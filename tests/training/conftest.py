"""Fixtures for the real-process training tests: the ``modelship train`` entrypoint run as a
subprocess against a real MLflow backend, either a sqlite file with an artifact directory or
an ``mlflow server`` process on 127.0.0.1.

The data sets are read in place from ``../shared/datasets`` (never copied into the repo).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from servers import MlflowServer
from trainkit import Backend


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    return Backend(f"sqlite:///{tmp_path / 'mlflow.db'}", str(artifacts), tmp_path)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Backend:
    """``mlflow server`` on a free loopback port, artifacts proxied; stopped on teardown."""
    root = tmp_path_factory.mktemp("mlflow-server")
    server = MlflowServer(root).start()
    try:
        workdir = root / "work"
        workdir.mkdir()
        yield Backend(server.url, None, workdir)
    finally:
        server.stop()
