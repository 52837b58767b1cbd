"""Everything one model server process holds: the model, its metrics, the micro-batcher, the
drift window, the prediction store (or log), and the request handling the HTTP routes delegate to.

Kept apart from the BentoML service class so it is plain Python: the routes in
:mod:`modelship.serving.service` are one line each.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from modelship.monitoring import metrics as names
from modelship.serving.batching import MicroBatcher
from modelship.serving.errors import FeedbackDisabled, ModelNotReady, PredictionError, ServingError, UnknownPrediction, is_client_error, status_of
from modelship.serving.feedback import absolute_error, is_correct, parse_feedback, record_ids, request_id_of
from modelship.serving.model import ServedModel
from modelship.serving.settings import ServingSettings

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
VERSION_HEADER = "x-model-version"
VARIANT_HEADER = "x-model-variant"


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


def _freeze_heap() -> None:
    """Move everything loaded so far (MLflow, pandas, XGBoost, the model) out of the garbage
    collector's reach: full collections otherwise rescan that heap and pause every request for
    tens of milliseconds, which is what the p99 latency shows."""
    import gc

    gc.collect()
    gc.freeze()


class ModelRuntime:
    def __init__(self, settings: ServingSettings) -> None:
        from modelship.serving.telemetry import ServingMetrics

        self.settings = settings
        self.model = ServedModel(settings)
        # An alias is resolved at load: until then requests (503s) are counted under the alias.
        self.metrics = ServingMetrics(settings.model_name, settings.model_version.lstrip("@"), settings.variant, eager=settings.alias is None)
        batching = settings.serving.batching
        self.batcher = MicroBatcher(
            self.model.predict,
            max_batch_size=batching.max_batch_size,
            max_latency_ms=batching.max_latency_ms,
            on_batch=lambda rows: self.metrics.batch(rows),
            enabled=batching.enabled,
        )
        self.drift: Any = None
        self.prediction_log: Any = None
        if settings.prediction_log:
            from modelship.serving.predlog import PredictionLog

            self.prediction_log = PredictionLog(settings.prediction_log)
        self.store: Any = None
        if settings.monitoring.feedback.enabled and not settings.store_dsn:
            from modelship.api.names import ENV_PREDICTION_STORE_DSN

            log.warning("monitoring.feedback is enabled but %s is not set: no prediction store, POST /feedback answers 404 feedback_disabled", ENV_PREDICTION_STORE_DSN)
        if settings.store_enabled:
            from modelship.serving.store import PredictionStore, StoreSettings

            assert settings.store_dsn is not None
            self.store = PredictionStore(
                StoreSettings(dsn=settings.store_dsn, model=settings.model_name, retention_seconds=settings.retention_seconds, buffer_rows=settings.store_buffer_rows),
                # Through self.metrics at call time: an alias gets its metrics anew once resolved.
                on_written=lambda rows: self.metrics.store_written(rows),
                on_dropped=lambda rows: self.metrics.store_dropped(rows),
                on_connected=lambda up: self.metrics.store_connected(up),
            )
        self._classification = False
        self._stopping = threading.Event()
        self._loader: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start_loading(self) -> None:
        """Load the model in the background; the server answers (not ready) meanwhile."""
        self._loader = threading.Thread(target=self._load_until_ready, name="model-loader", daemon=True)
        self._loader.start()

    def _load_until_ready(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            try:
                self.model.load()
                break
            except Exception as error:  # noqa: BLE001 - keep trying: MLflow may come back
                self.model.load_error = f"loading failed (attempt {attempt}): {error}"
                log.error("model %s %s: %s; retrying in %.0fs", self.settings.model_name, self.settings.model_version, self.model.load_error, self.settings.load_retry_seconds)
                if self._stopping.wait(self.settings.load_retry_seconds):
                    return
        if self._stopping.is_set():
            return
        self._on_loaded()

    def _on_loaded(self) -> None:
        from modelship.serving.telemetry import ServingMetrics

        model = self.model
        assert model.artifacts is not None and model.schema is not None
        self._classification = model.schema.task == "classification"
        # The lean XGBoost path is fast enough to run on the event loop (see batching.py).
        self.batcher.inline = model.predictor.name == "xgboost-booster"
        if model.artifacts.version != self.metrics.labels[names.LABEL_VERSION]:
            self.metrics = ServingMetrics(self.settings.model_name, model.artifacts.version, self.settings.variant)
        self._start_drift()
        if self.store is not None:
            classes = [str(c) for c in model.schema.classes] if model.schema.classes else ([] if self._classification else None)
            self.metrics.store_ready(classes, self.settings.monitoring.feedback.quality_threshold)
        _freeze_heap()
        self.metrics.ready(True, model.artifacts.run_id, model.schema.task)

    def _start_drift(self) -> None:
        drift = self.settings.monitoring.drift
        model = self.model
        if not drift.enabled:
            return
        if model.artifacts is None or model.artifacts.reference_path is None or model.schema is None:
            log.warning("no reference sample: drift detection is off")
            return
        from modelship.monitoring.drift import DriftSettings
        from modelship.serving.drift_monitor import DriftMonitor

        in_reference = set(model.reference.columns)
        columns = [name for name in model.schema.names if name in in_reference]
        self.drift = DriftMonitor(
            reference_path=str(model.artifacts.reference_path),
            reference=model.reference,
            columns=columns,
            categorical=[name for name in model.schema.categorical if name in in_reference],
            settings=DriftSettings(method=drift.method, threshold=drift.threshold, drift_share=drift.drift_share),
            window_size=drift.window_size,
            min_rows=drift.min_rows,
            interval_seconds=self.settings.drift_interval_seconds,
            on_result=lambda result, seconds: self.metrics.drift(result, seconds),
            on_failure=lambda: self.metrics.drift_failed(),
            on_window=lambda rows: self.metrics.window(rows),
            executor=self.settings.drift_executor,
        )
        self.drift.start()

    def start_store(self) -> None:
        """Start the prediction store's writer on the serving event loop (a startup hook)."""
        if self.store is not None:
            self.store.start()

    async def close_store(self) -> None:
        if self.store is not None:
            await self.store.close()

    def close(self) -> None:
        self._stopping.set()
        if self.drift is not None:
            self.drift.stop()
        self.batcher.close()
        if self.prediction_log is not None:
            self.prediction_log.close()

    @property
    def ready(self) -> bool:
        return self.model.ready

    # --- requests ------------------------------------------------------------------------

    async def predict(self, body: bytes, request_id: str | None, endpoint: str = "predict", traffic: str = names.TRAFFIC_LIVE) -> Reply:
        """``POST /predict`` (micro-batched) and ``POST /predict/batch`` (one direct model call).
        A ``shadow`` copy (:mod:`modelship.serving.mirroring`) is answered and counted as such,
        but feeds neither the drift window nor the prediction store: its inputs are the users'
        and already count where the users were answered."""
        started = time.perf_counter()
        request_id = request_id_of(request_id)
        headers = {REQUEST_ID_HEADER: request_id, VARIANT_HEADER: self.settings.variant}
        try:
            records, prepared = self.model.preprocess(body)
            if endpoint == "batch":
                output = await self.batcher.run_direct(prepared)
            else:
                output = await self.batcher.submit(prepared)
            reply = self.model.postprocess(output)
        except Exception as unexpected:  # noqa: BLE001 - a bug must still answer (500) and be counted
            if isinstance(unexpected, ServingError):
                error = unexpected
            else:
                log.exception("unexpected error on %s", endpoint)
                error = PredictionError(f"internal error: {type(unexpected).__name__}")
            outcome = names.OUTCOME_INVALID if is_client_error(error) else names.OUTCOME_ERROR
            self.metrics.request(outcome, endpoint, time.perf_counter() - started, traffic)
            if self.model.artifacts is not None:
                headers[VERSION_HEADER] = self.model.artifacts.version
            if isinstance(error, ModelNotReady):
                headers["retry-after"] = "5"
            return Reply(status_of(error), error.body(), headers)
        ids = record_ids(request_id, len(records))
        reply["requestId"] = request_id
        if len(ids) > 1:
            reply["recordIds"] = ids
        self.metrics.request(names.OUTCOME_SUCCESS, endpoint, time.perf_counter() - started, traffic)
        self.metrics.predictions(output.predictions, self._classification, traffic)
        live = traffic != names.TRAFFIC_SHADOW
        if live and self.drift is not None:
            self.drift.add(records)
        if live and self.store is not None:
            self._store(request_id, ids, records, reply)
        if self.prediction_log is not None:
            self.prediction_log.record(request_id, records, reply if live else {**reply, names.LABEL_TRAFFIC: traffic})
        headers[VERSION_HEADER] = reply["version"]
        return Reply(200, reply, headers)

    def _store(self, request_id: str, ids: list[str], records: list[dict[str, Any]], reply: dict[str, Any]) -> None:
        now = time.time()
        version, variant = reply["version"], reply["variant"]
        probabilities = reply.get("probabilities") or [None] * len(ids)
        self.store.record([(record_id, request_id, now, version, variant, record, prediction, proba) for record_id, record, prediction, proba in zip(ids, records, reply["predictions"], probabilities, strict=True)])

    async def feedback(self, body: bytes) -> Reply:
        """``POST /feedback``: true labels (or values) for stored predictions, each counted once."""
        headers = {VARIANT_HEADER: self.settings.variant}
        try:
            if self.store is None:
                raise FeedbackDisabled("this model has no prediction store: enable spec.monitoring.feedback (and give the operator the prediction-store Secret)")
            if not self.model.ready or self.model.schema is None:
                raise ModelNotReady(self.model.load_error or "the model is loading")
            schema = self.model.schema
            items = parse_feedback(body, schema.task, schema.classes)
            stored = await self.store.lookup([item.record_id for item in items])
            unknown = [(index, item.record_id) for index, item in enumerate(items) if item.record_id not in stored]
            if unknown:
                listed = ", ".join(repr(record_id) for _, record_id in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                raise UnknownPrediction(
                    f"no stored prediction with requestId {listed}: nothing was recorded",
                    [{"loc": ["feedback", index, "requestId"], "msg": f"no stored prediction {record_id!r} (unknown, or older than the retention)", "type": "not_found"} for index, record_id in unknown],
                )
            new = await self.store.add_feedback([(item.record_id, item.label, item.value) for item in items])
        except ServingError as error:
            if isinstance(error, ModelNotReady):
                headers["retry-after"] = "5"
            return Reply(status_of(error), error.body(), headers)
        results = []
        for item in items:
            prediction = stored[item.record_id]
            result: dict[str, Any] = {"requestId": item.record_id, "status": "stored" if item.record_id in new else "duplicate", "version": prediction.version, "variant": prediction.variant}
            if item.label is not None:
                correct = is_correct(prediction.prediction, item.label)
                result["correct"] = correct
                if item.record_id in new:
                    self.metrics.labelled(prediction.version, prediction.variant, correct, item.label)
            elif item.value is not None:
                deviation = absolute_error(prediction.prediction, item.value)
                result["absoluteError"] = deviation
                if item.record_id in new:
                    self.metrics.error(prediction.version, prediction.variant, deviation)
            results.append(result)
        return Reply(200, {"stored": len(new), "duplicates": len(items) - len(new), "results": results}, headers)

    def drift_report_path(self) -> str | None:
        """The latest drift evaluation's HTML report, when there is one."""
        import os

        if self.drift is None or not os.path.exists(self.drift.report_path):
            return None
        return self.drift.report_path

    def describe(self) -> Reply:
        info = self.model.info()
        if self.drift is not None and self.drift.last is not None:
            last = self.drift.last
            info["lastDrift"] = {
                "rows": last.rows,
                "driftedShare": last.drifted_share,
                "driftDetected": last.drift_detected,
                "seconds": round(self.drift.last_seconds or 0.0, 3),
                "features": {name: {"score": None if math.isnan(item.score) else item.score, "drifted": item.drifted, "method": item.method} for name, item in last.features.items()},
            }
        if self.drift is not None:
            info["driftWindowRows"] = len(self.drift.window)
        info["feedback"] = self.settings.monitoring.feedback.to_wire()
        store = self.store
        info["predictionStore"] = {"enabled": store is not None} | (
            {"buffered": store.buffered, "written": store.written, "dropped": store.dropped} if store is not None else {}
        )
        headers = {VARIANT_HEADER: self.settings.variant}
        if self.model.artifacts is not None:
            headers[VERSION_HEADER] = self.model.artifacts.version
        return Reply(200, json.loads(json.dumps(info, default=str)), headers)
