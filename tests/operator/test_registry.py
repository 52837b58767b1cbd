"""The operator's MLflow REST client against a real MLflow server on 127.0.0.1."""

from __future__ import annotations

import pytest

from modelship.api.results import TrainingOutcome
from modelship.operator import registry
from servers import MlflowServer, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    mlflow = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    try:
        yield mlflow
    finally:
        mlflow.stop()


@pytest.fixture(scope="module")
def model(server):
    """Two versions made with MLflow's own client, tagged as the training Job tags them."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.url)
    client.create_registered_model("reg-test")
    experiment = client.create_experiment("reg-test")
    versions = []
    for index, (job, gate, r2) in enumerate([("job-a", "passed", 0.81), ("job-b", "failed", 0.42)]):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "r2", r2)
        client.set_terminated(run.info.run_id)
        version = client.create_model_version("reg-test", f"runs:/{run.info.run_id}/model", run.info.run_id, tags={"modelship.io/job": job, "modelship.io/gate": gate})
        versions.append(version.version)
    client.set_registered_model_alias("reg-test", "challenger", versions[0])
    return client, versions


def test_result_recovered_from_lineage_tags(server, model):
    _, versions = model
    found = registry.result_from_registry(server.url, "reg-test", "job-a")
    assert found.outcome == TrainingOutcome.succeeded and found.version == versions[0] and found.metrics == {"r2": 0.81}
    failed = registry.result_from_registry(server.url, "reg-test", "job-b")
    assert failed.outcome == TrainingOutcome.gate_failed and failed.gate_passed is False
    assert registry.result_from_registry(server.url, "reg-test", "job-unknown") is None
    assert registry.result_from_registry(server.url, "no-such-model", "job-a") is None


def test_promote_moves_champion_and_drops_the_same_challenger(server, model):
    client, versions = model
    assert "champion" not in client.get_registered_model("reg-test").aliases
    registry.promote(server.url, "reg-test", versions[0])
    assert client.get_model_version_by_alias("reg-test", "champion").version == versions[0]
    assert "challenger" not in client.get_registered_model("reg-test").aliases
    registry.promote(server.url, "reg-test", versions[1])
    assert client.get_model_version_by_alias("reg-test", "champion").version == versions[1]
    registry.forget(server.url, "reg-test")
    assert client.get_registered_model("reg-test").aliases == {}


def test_unreachable_or_non_http_registry_is_a_transient_error():
    with pytest.raises(registry.RegistryUnavailable, match="ConnectError"):
        registry.promote(f"http://127.0.0.1:{free_port()}", "m", "1")
    with pytest.raises(registry.RegistryUnavailable, match="over HTTP"):
        registry.result_from_registry("sqlite:///x.db", "m", "job")
