"""What one model server serves and how: read from the environment the pod (or ``modelship
serve``) sets, so the BentoML worker process gets the same settings as the command line."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelship.api.base import parse_duration
from modelship.api.v1alpha1 import MonitoringSpec, ServingSpec, unwrap_spec

from modelship.api.names import ENV_MODEL_CACHE as ENV_CACHE
from modelship.api.names import ENV_MODEL_NAME, ENV_MODEL_VERSION, ENV_PORT, ENV_SPEC, ENV_TRACKING_URI, ENV_VARIANT
from modelship.api.names import ENV_PREDICTION_STORE_BUFFER, ENV_PREDICTION_STORE_DSN

ENV_PREDICTION_LOG = "MODELSHIP_PREDICTION_LOG"
#: ``process`` (default: Evidently runs in a niced child process, off the GIL) or ``thread``.
ENV_DRIFT_EXECUTOR = "MODELSHIP_DRIFT_EXECUTOR"
#: Seconds between two attempts to load the model while MLflow is unreachable.
ENV_LOAD_RETRY = "MODELSHIP_LOAD_RETRY_SECONDS"
#: Threads XGBoost may use for one batched prediction.
ENV_MODEL_THREADS = "MODELSHIP_MODEL_THREADS"

DEFAULT_VARIANT = "champion"
DEFAULT_CACHE = "~/.cache/modelship/models"


@dataclass(frozen=True)
class ServingSettings:
    """Settings of one model server process."""

    model_name: str
    model_version: str  #: a version number, or ``@alias`` (``@champion``)
    variant: str = DEFAULT_VARIANT
    tracking_uri: str | None = None
    cache_dir: Path = field(default_factory=lambda: Path(DEFAULT_CACHE).expanduser())
    serving: ServingSpec = field(default_factory=ServingSpec)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    prediction_log: str | None = None  #: a file path, or ``-`` for stdout
    drift_executor: str = "process"
    load_retry_seconds: float = 5.0
    model_threads: int = 1
    #: PostgreSQL DSN of the prediction store (from a Secret via the environment, never the spec).
    store_dsn: str | None = field(default=None, repr=False)
    store_buffer_rows: int = 20_000

    @property
    def store_enabled(self) -> bool:
        return self.monitoring.feedback.enabled and bool(self.store_dsn)

    @property
    def retention_seconds(self) -> float:
        return parse_duration(self.monitoring.feedback.retention)

    @property
    def alias(self) -> str | None:
        return self.model_version[1:] if self.model_version.startswith("@") else None

    @property
    def drift_interval_seconds(self) -> float:
        return parse_duration(self.monitoring.drift.interval)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        env = os.environ if env is None else env
        name = env.get(ENV_MODEL_NAME, "").strip()
        version = env.get(ENV_MODEL_VERSION, "").strip()
        if not name or not version:
            raise ValueError(f"{ENV_MODEL_NAME} and {ENV_MODEL_VERSION} must be set")
        serving, monitoring = parse_spec(env.get(ENV_SPEC) or "")
        return cls(
            model_name=name,
            model_version=normalize_version(version),
            variant=env.get(ENV_VARIANT) or DEFAULT_VARIANT,
            tracking_uri=env.get(ENV_TRACKING_URI) or None,
            cache_dir=Path(env.get(ENV_CACHE) or DEFAULT_CACHE).expanduser(),
            serving=serving,
            monitoring=monitoring,
            prediction_log=env.get(ENV_PREDICTION_LOG) or None,
            drift_executor=env.get(ENV_DRIFT_EXECUTOR) or "process",
            load_retry_seconds=float(env.get(ENV_LOAD_RETRY) or 5.0),
            model_threads=int(env.get(ENV_MODEL_THREADS) or 1),
            store_dsn=env.get(ENV_PREDICTION_STORE_DSN) or None,
            store_buffer_rows=int(env.get(ENV_PREDICTION_STORE_BUFFER) or 20_000),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that :meth:`from_env` reads back (for the BentoML worker process)."""
        env = {
            ENV_MODEL_NAME: self.model_name,
            ENV_MODEL_VERSION: self.model_version,
            ENV_VARIANT: self.variant,
            ENV_CACHE: str(self.cache_dir),
            ENV_SPEC: json.dumps({"serving": self.serving.to_wire(), "monitoring": self.monitoring.to_wire()}),
            ENV_DRIFT_EXECUTOR: self.drift_executor,
            ENV_LOAD_RETRY: str(self.load_retry_seconds),
            ENV_MODEL_THREADS: str(self.model_threads),
        }
        if self.tracking_uri:
            env[ENV_TRACKING_URI] = self.tracking_uri
        if self.prediction_log:
            env[ENV_PREDICTION_LOG] = self.prediction_log
        if self.store_dsn:
            env[ENV_PREDICTION_STORE_DSN] = self.store_dsn
        env[ENV_PREDICTION_STORE_BUFFER] = str(self.store_buffer_rows)
        return env


def normalize_version(version: str) -> str:
    """``3`` → ``3``; ``@champion`` → ``@champion``; ``champion`` (an alias without ``@``) → ``@champion``."""
    version = version.strip()
    if version.isdigit() or version.startswith("@"):
        if version == "@" or (version.startswith("@") and not version[1:].replace("-", "").replace("_", "").isalnum()):
            raise ValueError(f"{version!r} is not a model version number or @alias")
        return version
    if version.replace("-", "").replace("_", "").isalnum():
        return "@" + version
    raise ValueError(f"{version!r} is not a model version number or @alias")


def parse_spec(text: str) -> tuple[ServingSpec, MonitoringSpec]:
    """``serving`` and ``monitoring`` of a ModelDeployment spec (or of a whole resource), JSON.

    Missing parts take the contract's defaults; other parts of the spec are ignored.
    """
    if not text.strip():
        return ServingSpec(), MonitoringSpec()
    document: Any = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("the spec must be a JSON object")
    document = unwrap_spec(document)
    parts = _SpecParts.model_validate({key: document[key] for key in ("serving", "monitoring") if document.get(key) is not None})
    return parts.serving, parts.monitoring


class _SpecParts(BaseModel):
    """The parts of a spec serving reads; errors name ``serving.…`` / ``monitoring.…``."""

    model_config = ConfigDict(extra="ignore")

    serving: ServingSpec = Field(default_factory=ServingSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
