"""Fetch one registered model version from MLflow into a local cache, or find it there.

Cache layout (``cache_dir`` is ``--cache-dir`` / ``MODELSHIP_MODEL_CACHE``)::

    <cache_dir>/<model name>/<version>/model/        the MLflow model directory (MLmodel, model.pkl…)
                                      /reference.parquet   the training reference sample (if logged)
                                      /meta.json           run id, metrics, schema, fetched at
    <cache_dir>/<model name>/aliases/<alias>           the version an alias last resolved to

A version directory appears only once complete (it is downloaded next to it and renamed), so a
crash mid-download never leaves a half cache. A pinned version in the cache is served without
contacting MLflow at all; an alias is resolved with MLflow when it answers and from the last
resolution otherwise, so a restart works while MLflow is down.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelship.api.results import FEATURE_SCHEMA_ARTIFACT, MODEL_ARTIFACT, REFERENCE_ARTIFACT, VALIDATION_REPORT_ARTIFACT
from modelship.serving.errors import ModelLoadError

log = logging.getLogger(__name__)

META_FILE = "meta.json"
REFERENCE_FILE = "reference.parquet"
MODEL_DIR = "model"

#: MLflow's HTTP client retries for minutes by default; the loader retries on its own, so one
#: attempt should fail fast when the tracking server is down.
MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


@dataclass
class ModelArtifacts:
    """A model version on local disk, with what serving needs to know about it."""

    name: str
    version: str
    directory: Path
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    feature_schema: dict[str, Any] | None = None
    signature_inputs: list[dict[str, Any]] | None = None
    missing_share: dict[str, float] = field(default_factory=dict)  #: per feature, from the validation report
    from_cache: bool = False

    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR

    @property
    def reference_path(self) -> Path | None:
        path = self.directory / REFERENCE_FILE
        return path if path.exists() else None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class ModelCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def version_dir(self, name: str, version: str) -> Path:
        return self.root / _safe(name) / str(version)

    def alias_file(self, name: str, alias: str) -> Path:
        return self.root / _safe(name) / "aliases" / _safe(alias)

    def lookup(self, name: str, version: str) -> ModelArtifacts | None:
        directory = self.version_dir(name, version)
        meta_path = directory / META_FILE
        if not meta_path.exists():
            return None
        meta = json.loads(meta_path.read_text())
        return ModelArtifacts(
            name=name,
            version=str(version),
            directory=directory,
            run_id=meta.get("run_id"),
            metrics=meta.get("metrics") or {},
            aliases=meta.get("aliases") or [],
            feature_schema=meta.get("feature_schema"),
            signature_inputs=meta.get("signature_inputs"),
            missing_share=meta.get("missing_share") or {},
            from_cache=True,
        )

    def remember_alias(self, name: str, alias: str, version: str) -> None:
        path = self.alias_file(name, alias)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(version))
        os.replace(tmp, path)

    def recall_alias(self, name: str, alias: str) -> str | None:
        path = self.alias_file(name, alias)
        return path.read_text().strip() if path.exists() else None


def fetch(name: str, version_or_alias: str, cache: ModelCache, tracking_uri: str | None = None) -> ModelArtifacts:
    """The model version on local disk: from the cache when there, else downloaded from MLflow.

    ``version_or_alias`` is a number or ``@alias``. Raises :class:`ModelLoadError` when MLflow
    cannot be reached and the cache cannot stand in, or the version does not exist.
    """
    for key, value in MLFLOW_CLIENT_ENV.items():
        os.environ.setdefault(key, value)
    alias = version_or_alias[1:] if version_or_alias.startswith("@") else None
    version = None if alias else version_or_alias
    client = None
    if alias:
        try:
            client = _client(tracking_uri)
            version = str(client.get_model_version_by_alias(name, alias).version)
            cache.remember_alias(name, alias, version)
        except Exception as error:  # noqa: BLE001 - MLflow raises many kinds; the cache decides
            version = cache.recall_alias(name, alias)
            if version is None or cache.lookup(name, version) is None:
                raise ModelLoadError(f"cannot resolve {name}@{alias} with MLflow and no cached resolution: {_short(error)}") from error
            log.warning("MLflow unreachable (%s); serving %s@%s as cached version %s", _short(error), name, alias, version)
    assert version is not None
    cached = cache.lookup(name, version)
    if cached is not None:
        log.info("model %s version %s found in the cache at %s", name, version, cached.directory)
        return cached
    try:
        return _download(client or _client(tracking_uri), name, version, cache, tracking_uri)
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001
        raise ModelLoadError(f"cannot fetch {name} version {version} from MLflow: {_short(error)}") from error


def _client(tracking_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def _download(client: Any, name: str, version: str, cache: ModelCache, tracking_uri: str | None) -> ModelArtifacts:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    started = time.perf_counter()
    try:
        model_version = client.get_model_version(name, version)
    except MlflowException as error:
        if getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise ModelLoadError(f"model {name} has no version {version}") from error
        raise
    run_id = model_version.run_id
    final = cache.version_dir(name, version)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
    try:
        model_dir = staging / MODEL_DIR
        model_dir.mkdir()
        # The version's own artifact location, so no global MLflow state (registry URI) is used.
        source = client.get_model_version_download_uri(name, version)
        mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(model_dir), tracking_uri=tracking_uri)
        model_dir = _find_mlmodel_dir(model_dir)
        if model_dir != staging / MODEL_DIR:
            shutil.move(str(model_dir), str(staging / "model.tmp"))
            shutil.rmtree(staging / MODEL_DIR)
            os.replace(staging / "model.tmp", staging / MODEL_DIR)
        mlmodel = Model.load(str(staging / MODEL_DIR))
        feature_schema = (mlmodel.metadata or {}).get("feature_schema")
        signature_inputs = mlmodel.signature.inputs.to_dict() if mlmodel.signature is not None and mlmodel.signature.inputs is not None else None
        metrics: dict[str, float] = {}
        missing_share: dict[str, float] = {}
        if run_id:
            run = client.get_run(run_id)
            metrics = dict(run.data.metrics)
            if feature_schema is None:
                feature_schema = _try_json(client, run_id, FEATURE_SCHEMA_ARTIFACT, staging)
            report = _try_json(client, run_id, VALIDATION_REPORT_ARTIFACT, staging) or {}
            columns = report.get("columns") if isinstance(report.get("columns"), dict) else {}
            missing_share = {str(k): float(v.get("missingShare") or 0.0) for k, v in columns.items() if isinstance(v, dict)}
            try:
                path = client.download_artifacts(run_id, REFERENCE_ARTIFACT, str(staging))
                os.replace(path, staging / REFERENCE_FILE)
            except Exception as error:  # noqa: BLE001
                log.warning("run %s has no reference sample at %s (%s): drift is off", run_id, REFERENCE_ARTIFACT, _short(error))
        meta = {
            "name": name,
            "version": str(version),
            "run_id": run_id,
            "metrics": metrics,
            "aliases": list(getattr(model_version, "aliases", []) or []),
            "feature_schema": feature_schema,
            "signature_inputs": signature_inputs,
            "missing_share": missing_share,
            "source": getattr(model_version, "source", None),
            "fetched_at": time.time(),
        }
        (staging / META_FILE).write_text(json.dumps(meta, default=str, indent=1))
        for leftover in ("reference",):
            shutil.rmtree(staging / leftover, ignore_errors=True)
        try:
            os.replace(staging, final)
        except OSError:
            if cache.lookup(name, version) is None:  # someone else finished first: keep theirs
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("fetched %s version %s (run %s) from MLflow in %.1fs", name, version, run_id, time.perf_counter() - started)
    artifacts = cache.lookup(name, version)
    assert artifacts is not None
    artifacts.from_cache = False
    return artifacts


def _find_mlmodel_dir(root: Path) -> Path:
    if (root / "MLmodel").exists():
        return root
    for path in sorted(root.rglob("MLmodel")):
        return path.parent
    raise ModelLoadError(f"no MLmodel file in the downloaded artifacts of {MODEL_ARTIFACT!r}")


def _try_json(client: Any, run_id: str, path: str, staging: Path) -> dict[str, Any] | None:
    try:
        local = client.download_artifacts(run_id, path, str(staging / "extra"))
        return json.loads(Path(local).read_text())
    except Exception:  # noqa: BLE001
        return None
    finally:
        shutil.rmtree(staging / "extra", ignore_errors=True)
