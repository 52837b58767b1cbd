"""The operator's MLflow calls: move the ``champion`` alias, recover a result from the registry.

Blocking; the handlers run them in threads. Any failure to reach MLflow is transient.
"""

from __future__ import annotations

import logging

from modelship.api.results import CHALLENGER_ALIAS, CHAMPION_ALIAS, LINEAGE_TAG_PREFIX, TrainingOutcome, TrainingResult

log = logging.getLogger(__name__)
JOB_TAG = f"{LINEAGE_TAG_PREFIX}job"
GATE_TAG = f"{LINEAGE_TAG_PREFIX}gate"


class RegistryUnavailable(Exception):
    """MLflow could not be reached or answered with a server error; worth a retry."""


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def promote(tracking_uri: str, model_name: str, version: str) -> None:
    """Point ``champion`` at ``version``; drop ``challenger`` when it named the same version."""
    try:
        registry = _client(tracking_uri)
        registry.set_registered_model_alias(model_name, CHAMPION_ALIAS, version)
        try:
            challenger = registry.get_model_version_by_alias(model_name, CHALLENGER_ALIAS)
            if challenger.version == str(version):
                registry.delete_registered_model_alias(model_name, CHALLENGER_ALIAS)
        except Exception:  # no challenger alias: nothing to drop
            pass
    except Exception as error:
        raise RegistryUnavailable(f"MLflow: cannot move alias {CHAMPION_ALIAS} of {model_name} to {version}: {type(error).__name__}: {str(error)[:200]}") from error


def result_from_registry(tracking_uri: str, model_name: str, job_name: str) -> TrainingResult | None:
    """The version a Job registered, found by its lineage tag, for a pod that left no message."""
    try:
        registry = _client(tracking_uri)
        versions = registry.search_model_versions(f"name = '{model_name}' and tags.`{JOB_TAG}` = '{job_name}'")
    except Exception as error:
        if "RESOURCE_DOES_NOT_EXIST" in str(error):
            return None
        raise RegistryUnavailable(f"MLflow: cannot search versions of {model_name}: {type(error).__name__}") from error
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v.version))
    passed = (newest.tags or {}).get(GATE_TAG, "passed") == "passed"
    metrics: dict[str, float] = {}
    if newest.run_id:
        try:
            metrics = dict(registry.get_run(newest.run_id).data.metrics)
        except Exception:
            log.warning("run %s of %s v%s unreadable", newest.run_id, model_name, newest.version)
    return TrainingResult(
        outcome=TrainingOutcome.succeeded if passed else TrainingOutcome.gate_failed,
        version=str(newest.version),
        run_id=newest.run_id,
        metrics=metrics,
        gate_passed=passed,
        reason="recovered from the MLflow registry (the pod left no result)",
        model_name=model_name,
    )


def forget(tracking_uri: str, model_name: str) -> None:
    """Drop the serving aliases of a deleted ModelDeployment; versions stay for lineage."""
    registry = _client(tracking_uri)
    for alias in (CHAMPION_ALIAS, CHALLENGER_ALIAS):
        try:
            registry.delete_registered_model_alias(model_name, alias)
        except Exception as error:
            log.info("alias %s of %s not removed: %s", alias, model_name, type(error).__name__)
