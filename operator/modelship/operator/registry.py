"""The operator's MLflow calls: move the ``champion`` alias, recover a result from the registry.

A thin client of MLflow's REST API (``/api/2.0/mlflow/...``) rather than ``MlflowClient``:
the operator needs five calls, and importing the MLflow client costs ~113 MiB of RSS in every
operator pod (measured by benchmarks/bench_operator.py's run notes). Blocking; the handlers run
it in threads. Connection failures and server errors are transient.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx

from modelship.api.results import CHALLENGER_ALIAS, CHAMPION_ALIAS, LINEAGE_TAG_PREFIX, TrainingOutcome, TrainingResult

log = logging.getLogger(__name__)
JOB_TAG = f"{LINEAGE_TAG_PREFIX}job"
GATE_TAG = f"{LINEAGE_TAG_PREFIX}gate"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class RegistryUnavailable(Exception):
    """MLflow could not be reached or answered with a server error; worth a retry."""


class NotFound(Exception):
    """MLflow answered RESOURCE_DOES_NOT_EXIST."""


def _auth() -> dict[str, Any]:
    """Credentials the way MLflow clients take them, from env vars the Secret provides."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"headers": {"Authorization": f"Bearer {token}"}}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return {"auth": (user, password or "")} if user else {}


def _call(tracking_uri: str, method: str, path: str, *, params: dict | None = None, body: dict | None = None) -> dict[str, Any]:
    if not tracking_uri.startswith(("http://", "https://")):
        raise RegistryUnavailable(f"the operator talks to an MLflow server over HTTP; got tracking URI scheme {tracking_uri.split(':', 1)[0]!r}")
    verify = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "false").lower() != "true"
    try:
        with httpx.Client(base_url=tracking_uri.rstrip("/"), timeout=TIMEOUT, verify=verify, **_auth()) as client:
            response = client.request(method, f"/api/2.0/mlflow/{path}", params=params, json=body)
    except httpx.HTTPError as error:
        raise RegistryUnavailable(f"MLflow: {method} {path}: {type(error).__name__}") from error
    if response.status_code in (400, 404) and _missing(response):
        raise NotFound(path)
    if response.status_code >= 400:
        raise RegistryUnavailable(f"MLflow: {method} {path}: HTTP {response.status_code}: {response.text[:200]}")
    return response.json() if response.content else {}


def _missing(response: httpx.Response) -> bool:
    """MLflow says "no such thing" as 404 RESOURCE_DOES_NOT_EXIST, or (for an alias) 400 "... not found"."""
    try:
        error = response.json()
    except ValueError:
        return response.status_code == 404
    return error.get("error_code") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(error.get("message", "")).lower()


def promote(tracking_uri: str, model_name: str, version: str) -> None:
    """Point ``champion`` at ``version``; drop ``challenger`` when it named the same version."""
    _call(tracking_uri, "POST", "registered-models/alias", body={"name": model_name, "alias": CHAMPION_ALIAS, "version": str(version)})
    try:
        challenger = _call(tracking_uri, "GET", "registered-models/alias", params={"name": model_name, "alias": CHALLENGER_ALIAS})
    except NotFound:
        return
    if challenger.get("model_version", {}).get("version") == str(version):
        _call(tracking_uri, "DELETE", "registered-models/alias", body={"name": model_name, "alias": CHALLENGER_ALIAS})


def result_from_registry(tracking_uri: str, model_name: str, job_name: str) -> TrainingResult | None:
    """The version a Job registered, found by its lineage tag, for a pod that left no message."""
    try:
        found = _call(tracking_uri, "GET", "model-versions/search", params={"filter": f"name = '{model_name}' and tags.`{JOB_TAG}` = '{job_name}'", "max_results": 10})
    except NotFound:
        return None
    versions = found.get("model_versions") or []
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v["version"]))
    tags = {tag["key"]: tag.get("value") for tag in newest.get("tags") or []}
    passed = tags.get(GATE_TAG, "passed") == "passed"
    metrics: dict[str, float] = {}
    if newest.get("run_id"):
        try:
            run = _call(tracking_uri, "GET", "runs/get", params={"run_id": newest["run_id"]})
            metrics = {m["key"]: float(m["value"]) for m in run.get("run", {}).get("data", {}).get("metrics") or []}
        except (NotFound, RegistryUnavailable):
            log.warning("run %s of %s v%s unreadable", newest["run_id"], model_name, newest["version"])
    return TrainingResult(
        outcome=TrainingOutcome.succeeded if passed else TrainingOutcome.gate_failed,
        version=str(newest["version"]),
        run_id=newest.get("run_id"),
        metrics=metrics,
        gate_passed=passed,
        reason="recovered from the MLflow registry (the pod left no result)",
        model_name=model_name,
    )


def forget(tracking_uri: str, model_name: str) -> None:
    """Drop the serving aliases of a deleted ModelDeployment; versions stay for lineage."""
    for alias in (CHAMPION_ALIAS, CHALLENGER_ALIAS):
        try:
            _call(tracking_uri, "DELETE", "registered-models/alias", body={"name": model_name, "alias": alias})
        except (NotFound, RegistryUnavailable) as error:
            log.info("alias %s of %s not removed: %s", alias, model_name, error)
