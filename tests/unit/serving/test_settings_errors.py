"""Settings round-trip through the environment; one status per error class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelship.serving import errors
from modelship.serving.settings import ServingSettings, normalize_version, parse_spec


def test_env_round_trip() -> None:
    serving, monitoring = parse_spec(json.dumps({"serving": {"batching": {"maxBatchSize": 8}, "maxRecordsPerRequest": 5}, "monitoring": {"drift": {"interval": "2s", "minRows": 10}}}))
    settings = ServingSettings("m", "3", "canary", "http://mlflow:5000", Path("/tmp/c"), serving, monitoring, "-")
    again = ServingSettings.from_env(settings.to_env())
    assert again == settings
    assert again.drift_interval_seconds == 2.0
    assert again.serving.batching.max_batch_size == 8


def test_whole_resource_or_spec_or_nothing() -> None:
    assert parse_spec("")[0].max_records_per_request == 1000
    assert parse_spec(json.dumps({"spec": {"task": "regression", "serving": {"maxRecordsPerRequest": 7}}}))[0].max_records_per_request == 7
    with pytest.raises(ValueError):
        parse_spec(json.dumps({"serving": {"maxRecordsPerRequest": 0}}))
    with pytest.raises(ValueError):
        parse_spec("[1]")


def test_cli_names_the_bad_spec_field() -> None:
    from typer.testing import CliRunner

    from modelship.cli import app

    result = CliRunner().invoke(app, ["serve", "--model-name", "m", "--model-version", "1", "--spec-json", json.dumps({"serving": {"batching": {"maxBatchSize": 0}}})])
    assert result.exit_code == 2
    assert "spec.serving.batching.maxBatchSize" in result.output


@pytest.mark.parametrize(("given", "expected"), [("3", "3"), ("@champion", "@champion"), ("challenger", "@challenger"), (" 12 ", "12")])
def test_versions(given: str, expected: str) -> None:
    assert normalize_version(given) == expected


@pytest.mark.parametrize("bad", ["@", "1.5", "a b", "@x/y"])
def test_bad_versions(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_version(bad)


def test_missing_model_name() -> None:
    with pytest.raises(ValueError, match="MODELSHIP_MODEL_NAME"):
        ServingSettings.from_env({})


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.MalformedRequest("x"), 400),
        (errors.TooManyRecords("x"), 413),
        (errors.InvalidInput("x"), 422),
        (errors.ModelNotReady("x"), 503),
        (errors.ModelLoadError("x"), 503),
        (errors.PredictionError("x"), 500),
    ],
)
def test_one_status_per_error(error: errors.ServingError, status: int) -> None:
    assert errors.status_of(error) == status
    assert errors.is_client_error(error) == (status < 500)
    assert error.body()["error"] == error.code
