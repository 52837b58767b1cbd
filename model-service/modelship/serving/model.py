"""The served model, KServe style: ``load()``, ``ready``, then ``preprocess → predict → postprocess``.

Two predictors sit behind the same interface:

* :class:`BoosterPredictor`, the lean path for a pipeline whose last step is XGBoost: validated
  records go straight into a float32 matrix in the booster's feature order (categories as the
  booster's own category codes) and into ``Booster.inplace_predict``. No DataFrame, no
  transformers on the request path.
* :class:`PipelinePredictor`, for any other scikit-learn pipeline: one DataFrame per batch in
  feature order, ``pipeline.predict`` (and ``predict_proba``).

The lean path is used only after it gave the same answers as ``pipeline.predict`` on the
training reference sample at load time; otherwise the pipeline path serves. So serving works
with any producer of an sklearn pipeline, and is fast with the training Job's XGBoost pipeline.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from modelship.serving.artifacts import ModelArtifacts, ModelCache, fetch
from modelship.serving.errors import InvalidInput, MalformedRequest, ModelNotReady, PredictionError, TooManyRecords
from modelship.serving.schema import CATEGORICAL, FeatureSchema, RecordValidator, nullable_columns
from modelship.serving.settings import ServingSettings

log = logging.getLogger(__name__)

#: A request body may hold at most this many bytes per allowed record (before it is parsed).
MAX_BYTES_PER_RECORD = 64 * 1024
#: Rows of the reference sample used to check the lean path against the pipeline.
SELF_CHECK_ROWS = 256
SELF_CHECK_TOLERANCE = 1e-4


@dataclass
class Output:
    """Predictions of one request (or one batch)."""

    predictions: list[Any]
    probabilities: np.ndarray | None = None  #: rows × classes, classifiers only


class Predictor(Protocol):
    name: str

    def prepare(self, records: list[dict[str, Any]]) -> Any:
        """Cheap, on the request path: validated records → the predictor's input for them."""

    def run(self, items: list[Any]) -> list[Output]:
        """In the model thread: one model call for many prepared items, split per item."""


def _split(values: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    if len(sizes) == 1:
        return [values]
    return np.split(values, np.cumsum(sizes)[:-1])


class BoosterPredictor:
    """XGBoost ``inplace_predict`` on a float32 matrix built straight from validated records."""

    name = "xgboost-booster"

    def __init__(self, booster: Any, classes: list[Any] | None, threads: int = 1) -> None:
        self.booster = booster
        self.classes = np.asarray(classes, dtype=object) if classes is not None else None
        self.features = list(booster.feature_names or [])
        if not self.features:
            raise ValueError("the booster has no feature names")
        self.codes: dict[int, dict[str, float]] = {}
        for index, (name, categories) in enumerate(booster.get_categories(export_to_arrow=True).to_arrow()):
            if categories is not None:
                self.codes[index] = {str(value): float(code) for code, value in enumerate(categories.to_pylist())}
        types = booster.feature_types or []
        if any(t == "c" for t in types) and not self.codes:
            raise ValueError("the booster has categorical features but no stored categories")
        booster.set_param({"nthread": threads})
        self._numeric = [(i, f) for i, f in enumerate(self.features) if i not in self.codes]
        self._categorical = [(i, f, self.codes[i]) for i, f in enumerate(self.features) if i in self.codes]

    def prepare(self, records: list[dict[str, Any]]) -> np.ndarray:
        matrix = np.full((len(records), len(self.features)), np.nan, dtype=np.float32)
        nan = math.nan
        for row, record in enumerate(records):
            target = matrix[row]
            for index, name in self._numeric:
                value = record.get(name)
                if value is not None:
                    target[index] = value
            for index, name, codes in self._categorical:
                value = record.get(name)
                if value is not None:
                    target[index] = codes.get(value, nan)
        return matrix

    def run(self, items: list[np.ndarray]) -> list[Output]:
        matrix = items[0] if len(items) == 1 else np.concatenate(items)
        raw = np.asarray(self.booster.inplace_predict(matrix, validate_features=False))
        sizes = [len(item) for item in items]
        if self.classes is None:
            return [Output(part.astype(float).ravel().tolist()) for part in _split(raw, sizes)]
        if raw.ndim == 1:  # binary:logistic gives P(class 1)
            raw = np.column_stack([1.0 - raw, raw])
        labels = self.classes[np.argmax(raw, axis=1)]
        return [Output(lab.tolist(), prob) for lab, prob in zip(_split(labels, sizes), _split(raw, sizes), strict=True)]


class PipelinePredictor:
    """The logged sklearn pipeline, one DataFrame per batch."""

    name = "sklearn-pipeline"

    def __init__(self, pipeline: Any, schema: FeatureSchema, classes: list[Any] | None) -> None:
        self.pipeline = pipeline
        self.schema = schema
        self.classes = classes
        self._proba = classes is not None and hasattr(pipeline, "predict_proba")

    def prepare(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return records

    def frame(self, records: list[dict[str, Any]]) -> Any:
        import pandas as pd

        columns = {}
        for feature in self.schema.features:
            values = [record.get(feature.name) for record in records]
            if feature.kind == CATEGORICAL:
                columns[feature.name] = pd.Series(values, dtype=object)
            else:
                columns[feature.name] = pd.Series([np.nan if v is None else v for v in values], dtype="float64")
        return pd.DataFrame(columns)

    def run(self, items: list[list[dict[str, Any]]]) -> list[Output]:
        records = items[0] if len(items) == 1 else [record for item in items for record in item]
        frame = self.frame(records)
        sizes = [len(item) for item in items]
        if self._proba:
            probabilities = np.asarray(self.pipeline.predict_proba(frame))
            labels = np.asarray(self.pipeline.classes_, dtype=object)[np.argmax(probabilities, axis=1)]
            return [Output(lab.tolist(), prob) for lab, prob in zip(_split(labels, sizes), _split(probabilities, sizes), strict=True)]
        predictions = np.asarray(self.pipeline.predict(frame))
        if self.classes is None:
            predictions = predictions.astype(float)
        return [Output(part.ravel().tolist()) for part in _split(predictions, sizes)]


def _booster_of(pipeline: Any) -> Any | None:
    """The XGBoost booster at the end of a pipeline (also inside a label-encoding wrapper)."""
    final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    for candidate in (final, getattr(final, "estimator_", None)):
        if candidate is not None and hasattr(candidate, "get_booster"):
            try:
                return candidate.get_booster()
            except Exception:  # noqa: BLE001 - not fitted, not XGBoost
                return None
    return None


def reference_records(reference: Any, schema: FeatureSchema, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of the reference sample as request records (NaN → missing, categories as strings)."""
    frame = reference if limit is None else reference.head(limit)
    names = [f for f in schema.features if f.name in frame.columns]
    records = []
    for values in frame.to_dict(orient="records"):
        record = {}
        for feature in names:
            value = values.get(feature.name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                record[feature.name] = None
                continue
            record[feature.name] = str(value) if feature.kind == CATEGORICAL else float(value)
        records.append(record)
    return records


def choose_predictor(pipeline: Any, schema: FeatureSchema, reference: Any, threads: int = 1) -> Any:
    """The lean booster path when it matches the pipeline on the reference sample, else the pipeline."""
    classes = list(schema.classes) if schema.classes is not None else (list(pipeline.classes_) if hasattr(pipeline, "classes_") else None)
    generic = PipelinePredictor(pipeline, schema, classes)
    booster = _booster_of(pipeline)
    if booster is None:
        return generic
    try:
        lean = BoosterPredictor(booster, classes, threads=threads)
        if set(lean.features) != set(schema.names):
            raise ValueError("booster features differ from the schema's")
        if reference is None or len(reference) == 0:
            raise ValueError("no reference sample to check the lean path against")
        records = reference_records(reference, schema, SELF_CHECK_ROWS)
        fast = lean.run([lean.prepare(records)])[0]
        slow = generic.run([generic.prepare(records)])[0]
        if classes is None:
            a, b = np.asarray(fast.predictions, dtype=float), np.asarray(slow.predictions, dtype=float)
            if not np.allclose(a, b, rtol=SELF_CHECK_TOLERANCE, atol=SELF_CHECK_TOLERANCE * max(1.0, float(np.abs(b).mean()))):
                raise ValueError(f"lean predictions differ from the pipeline's (max |Δ| {np.abs(a - b).max():.3g})")
        else:
            if list(fast.predictions) != list(slow.predictions):
                raise ValueError("lean class labels differ from the pipeline's")
            if slow.probabilities is not None and not np.allclose(fast.probabilities, slow.probabilities, atol=1e-4):
                raise ValueError("lean probabilities differ from the pipeline's")
        log.info("serving with the lean XGBoost booster path (checked on %d reference rows)", len(records))
        return lean
    except Exception as error:  # noqa: BLE001 - any doubt means the safe path
        log.warning("lean XGBoost path not used (%s); serving with the sklearn pipeline", error)
        return generic


class ServedModel:
    """One registered model version: loads once, then validates and predicts."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.ready = False
        self.load_error: str | None = None
        self.artifacts: ModelArtifacts | None = None
        self.schema: FeatureSchema | None = None
        self.validator: RecordValidator | None = None
        self.predictor: Any = None
        self.reference: Any = None
        self.load_seconds: float | None = None
        self._lock = threading.Lock()

    # --- load ----------------------------------------------------------------------------

    def load(self) -> None:
        """Fetch (or find in the cache) the version, build the schema and predictor, warm up."""
        with self._lock:
            if self.ready:
                return
            started = time.perf_counter()
            import mlflow.sklearn
            import pandas as pd

            artifacts = fetch(self.settings.model_name, self.settings.model_version, ModelCache(self.settings.cache_dir), self.settings.tracking_uri)
            pipeline = mlflow.sklearn.load_model(str(artifacts.model_dir))
            reference = pd.read_parquet(artifacts.reference_path) if artifacts.reference_path else None
            schema = self._schema(artifacts, pipeline, reference)
            self.artifacts, self.schema, self.reference = artifacts, schema, reference
            self.validator = RecordValidator(schema)
            self.predictor = choose_predictor(pipeline, schema, reference, threads=self.settings.model_threads)
            warm = reference_records(reference, schema, 32) if reference is not None else []
            if warm:
                self.predictor.run([self.predictor.prepare(self.validator.validate(warm))])
            self.load_seconds = time.perf_counter() - started
            self.load_error = None
            self.ready = True
            log.info(
                "model %s version %s ready in %.2fs (%s, %s path, cache %s)",
                artifacts.name, artifacts.version, self.load_seconds, schema.task, self.predictor.name, "hit" if artifacts.from_cache else "miss",
            )

    @staticmethod
    def _schema(artifacts: ModelArtifacts, pipeline: Any, reference: Any) -> FeatureSchema:
        nullable = nullable_columns(reference) | {name for name, share in artifacts.missing_share.items() if share > 0}
        if artifacts.feature_schema:
            return FeatureSchema.from_document(artifacts.feature_schema, nullable)
        if artifacts.signature_inputs:
            classes = list(pipeline.classes_) if hasattr(pipeline, "classes_") else None
            return FeatureSchema.from_signature(artifacts.signature_inputs, reference, classes)
        raise ValueError("the model has neither a feature schema nor a signature: cannot validate requests")

    # --- request path --------------------------------------------------------------------

    def parse(self, body: bytes) -> tuple[list[Any], str]:
        """JSON body → the list of raw records and the name errors are reported under."""
        from pydantic_core import from_json

        try:
            document = from_json(body or b"null", allow_inf_nan=True)
        except ValueError as error:
            raise MalformedRequest(f"the body is not valid JSON: {error}") from None
        if isinstance(document, dict):
            inner = document.get("records")
            if len(document) == 1 and isinstance(inner, list) and (self.schema is None or "records" not in self.schema.names):
                return inner, "records"
            return [document], "record"
        if isinstance(document, list):
            return document, "records"
        raise MalformedRequest("the body must be a JSON object (one record) or an array of records (objects keyed by feature name)")

    def preprocess(self, body: bytes) -> tuple[list[dict[str, Any]], Any]:
        """Parse, check size, validate every field; the validated records and the predictor's input."""
        if not self.ready or self.validator is None:
            raise ModelNotReady(self.load_error or "the model is loading")
        limit = self.settings.serving.max_records_per_request
        if len(body) > limit * MAX_BYTES_PER_RECORD:
            raise TooManyRecords(f"the body ({len(body)} bytes) is larger than {limit} records may be", [{"loc": ["body"], "msg": "body too large", "type": "too_long"}])
        raw, root = self.parse(body)
        if not raw:
            raise InvalidInput("no records: send one record or a non-empty array", [{"loc": [root], "msg": "at least one record is required", "type": "too_short"}])
        if len(raw) > limit:
            raise TooManyRecords(
                f"{len(raw)} records is more than maxRecordsPerRequest ({limit})",
                [{"loc": [root], "msg": f"at most {limit} records per request", "type": "too_long"}],
            )
        records = self.validator.validate_one(raw[0]) if root == "record" else None
        records = [records] if records is not None else self.validator.validate(raw, root)
        return records, self.predictor.prepare(records)

    def predict(self, items: list[Any]) -> list[Output]:
        """One model call for the prepared inputs of one or more requests (the model thread)."""
        try:
            return self.predictor.run(items)
        except Exception as error:  # noqa: BLE001
            log.exception("prediction failed")
            raise PredictionError(f"the model failed to predict: {type(error).__name__}") from error

    def postprocess(self, output: Output) -> dict[str, Any]:
        assert self.artifacts is not None
        body: dict[str, Any] = {"predictions": output.predictions}
        if output.probabilities is not None and self.schema is not None:
            classes = [str(c) for c in (self.schema.classes or getattr(self.predictor, "classes", None) or [])]
            body["probabilities"] = [dict(zip(classes, (round(float(p), 6) for p in row), strict=False)) for row in output.probabilities]
        body["model"] = self.artifacts.name
        body["version"] = self.artifacts.version
        body["variant"] = self.settings.variant
        return body

    # --- description ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        artifacts, schema = self.artifacts, self.schema
        return {
            "name": self.settings.model_name,
            "version": artifacts.version if artifacts else None,
            "requestedVersion": self.settings.model_version,
            "variant": self.settings.variant,
            "ready": self.ready,
            "loadError": self.load_error,
            "runId": artifacts.run_id if artifacts else None,
            "metrics": artifacts.metrics if artifacts else {},
            "aliases": artifacts.aliases if artifacts else [],
            "task": schema.task if schema else None,
            "schema": schema.to_json() if schema else None,
            "signature": {"inputs": artifacts.signature_inputs} if artifacts and artifacts.signature_inputs else None,
            "predictor": self.predictor.name if self.predictor else None,
            "fromCache": artifacts.from_cache if artifacts else None,
            "loadSeconds": round(self.load_seconds, 3) if self.load_seconds else None,
            "batching": self.settings.serving.batching.to_wire(),
            "maxRecordsPerRequest": self.settings.serving.max_records_per_request,
            "drift": self.settings.monitoring.drift.to_wire(),
        }
