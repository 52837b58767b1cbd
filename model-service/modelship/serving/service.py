"""The BentoML service: one registered model version per process (see ``modelship serve``).

BentoML 1.4 runs it (``@bentoml.service``): process supervision, ``/healthz`` and ``/livez``,
``/readyz`` (503 until :meth:`ModelService.__is_ready__` says the model is loaded),
``/docs.json`` and the docs page. ``/metrics`` is ours: the Modelship series from
:mod:`modelship.serving.telemetry`, from BentoML's multiprocess registry. The prediction routes are FastAPI routes mounted
into the service (``@bentoml.asgi_app``) that reach the service through
``bentoml.get_current_service()``: they read the raw body
so that every bad request, including a body that is not JSON, gets a 4xx with the field-level
detail and is counted as ``outcome="invalid"``; BentoML's ``@bentoml.api`` IO layer answers
those itself (400, or 500 for a non-JSON body to an untyped input) before user code runs, and
measured about half the requests/s of the mounted route on this machine (docs/benchmarks.md).

Settings come from the environment (:class:`modelship.serving.settings.ServingSettings`).
"""

from __future__ import annotations

import json
from typing import Any

import bentoml
from fastapi import FastAPI, Request
from fastapi.responses import Response

from modelship.serving.mirroring import request_traffic
from modelship.serving.runtime import REQUEST_ID_HEADER, ModelRuntime, Reply
from modelship.serving.settings import ServingSettings
from modelship.serving.timeout import install as install_request_timeout

install_request_timeout()  # before BentoML builds the ASGI app from this module's service

_RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One record: feature name → number, string (categorical) or null (where the feature allows missing values). GET /model lists the features.",
    "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "string"}, {"nullable": True}]},
}
_PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _RECORD_SCHEMA,
                        {"type": "array", "items": _RECORD_SCHEMA},
                        {"type": "object", "properties": {"records": {"type": "array", "items": _RECORD_SCHEMA}}, "required": ["records"]},
                    ]
                }
            }
        },
    }
}
_PREDICTION: dict[str, Any] = {
    "type": "object",
    "required": ["predictions", "model", "version", "variant"],
    "properties": {
        "predictions": {"type": "array", "items": {}, "description": "One prediction per record, in order (a number, or a class label)."},
        "probabilities": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}, "description": "Classifiers: class → probability, per record."},
        "model": {"type": "string"},
        "version": {"type": "string", "description": "The registered version that answered."},
        "variant": {"type": "string", "description": "The variant that answered (champion, canary, an A/B arm)."},
    },
}
_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "detail": {"type": "array", "items": {"type": "object", "properties": {"loc": {"type": "array", "items": {}}, "msg": {"type": "string"}, "type": {"type": "string"}}}},
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Predictions, with the version and variant that answered.", "content": {"application/json": {"schema": _PREDICTION}}},
    400: {"description": "The body is not JSON, or not a record or an array of records.", "content": {"application/json": {"schema": _ERROR}}},
    413: {"description": "More records than maxRecordsPerRequest.", "content": {"application/json": {"schema": _ERROR}}},
    422: {"description": "Invalid records: `detail` lists every offending field (`loc`, `msg`, `type`).", "content": {"application/json": {"schema": _ERROR}}},
    503: {"description": "The model is still loading.", "content": {"application/json": {"schema": _ERROR}}},
}

app = FastAPI(
    title="Modelship model server",
    description="Predictions from one registered model version. Responses carry the version and the variant that answered.",
    openapi_url=None,  # BentoML serves the merged spec at /docs.json
    docs_url=None,
    redoc_url=None,
)


def _configure_logging() -> None:
    """Process settings: Modelship's log lines next to BentoML's, no telemetry or progress bars, passive OpenMP."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("DO_NOT_TRACK", "true")  # Evidently's usage telemetry (inherited by the drift process)
    # Before XGBoost loads libgomp: idle OpenMP threads sleep instead of spinning. Spinning
    # doubled the cost of a 1-row prediction handed to the model thread (0.76 → 1.25 ms).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logger = logging.getLogger("modelship")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] [%(name)s] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _runtime() -> ModelRuntime:
    return bentoml.get_current_service().runtime


# The routes are plain module functions, not methods: BentoML injects ``self`` into FastAPI
# methods through a synchronous dependency, which FastAPI runs in its thread pool — a thread
# round trip on every request (measured: most of the latency at concurrency 1).
@app.post("/predict", openapi_extra=_PREDICT_BODY, responses=_ERRORS, summary="Predict one record or a list of records (adaptive batching)")
async def predict(request: Request) -> Response:
    return _response(await _runtime().predict(await request.body(), request.headers.get(REQUEST_ID_HEADER), "predict", request_traffic(request.headers.get("host"))))


@app.post("/predict/batch", openapi_extra=_PREDICT_BODY, responses=_ERRORS, summary="Predict a large list of records in one model call")
async def predict_batch(request: Request) -> Response:
    return _response(await _runtime().predict(await request.body(), request.headers.get(REQUEST_ID_HEADER), "batch", request_traffic(request.headers.get("host"))))


_FEEDBACK_ITEM: dict[str, Any] = {
    "type": "object",
    "required": ["requestId"],
    "properties": {
        "requestId": {"type": "string", "description": "The prediction's requestId (one-record request) or one of its recordIds."},
        "label": {"type": "string", "description": "Classification: the true class."},
        "value": {"type": "number", "description": "Regression: the true value."},
    },
}
_FEEDBACK: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [_FEEDBACK_ITEM, {"type": "array", "items": _FEEDBACK_ITEM}, {"type": "object", "properties": {"feedback": {"type": "array", "items": _FEEDBACK_ITEM}}, "required": ["feedback"]}]}}},
    }
}
_FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored; feedback for a prediction that already had some is reported as a duplicate and not counted again."},
    400: _ERRORS[400],
    404: {"description": "A requestId names no stored prediction (`unknown_request_id`, `detail` lists each; nothing was recorded), or this model has no prediction store (`feedback_disabled`).", "content": {"application/json": {"schema": _ERROR}}},
    413: {"description": "More than 10000 items.", "content": {"application/json": {"schema": _ERROR}}},
    422: {"description": "A label of the wrong type or an unknown class, a missing value: `detail` lists every one.", "content": {"application/json": {"schema": _ERROR}}},
    503: {"description": "The model is loading, or the prediction store's database does not answer.", "content": {"application/json": {"schema": _ERROR}}},
}


@app.post("/feedback", openapi_extra=_FEEDBACK, responses=_FEEDBACK_RESPONSES, summary="Ground truth for stored predictions: live accuracy / error per version")
async def feedback(request: Request) -> Response:
    return _response(await _runtime().feedback(await request.body()))


@app.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    # Ours because BentoML's metrics are off (see the service below).
    from starlette.concurrency import run_in_threadpool

    from modelship.serving.telemetry import exposition

    body, content_type = await run_in_threadpool(exposition)
    return Response(body, media_type=content_type)


@app.get("/drift/report", summary="The latest drift evaluation as Evidently's HTML report (404 before the first one)", response_class=Response)
async def drift_report() -> Response:
    from fastapi.responses import FileResponse

    path = _runtime().drift_report_path()
    if path is None:
        body = {"error": "no_drift_report", "message": "no drift evaluation yet: drift is off, or the window holds fewer than minRows rows"}
        return Response(json.dumps(body), status_code=404, media_type="application/json")
    # A file the evaluator wrote (and replaces atomically): streamed, nothing rendered here.
    return FileResponse(path, media_type="text/html; charset=utf-8")


@app.get("/model", summary="The served model: name, version, variant, feature schema, signature, training metrics")
async def model() -> Response:
    return _response(_runtime().describe())


def _response(reply: Reply) -> Response:
    return Response(reply.encode(), status_code=reply.status, media_type="application/json", headers=reply.headers)


@bentoml.service(
    name="modelship-model",
    workers=1,
    traffic={"timeout": 60},
    # Per-request framework work off the prediction routes (docs/benchmarks.md): no OpenTelemetry
    # spans (the platform runs no tracing backend; +50% requests/s at concurrency 32) and no
    # BentoML request metrics, whose middleware updates three multiprocess series per request
    # whatever its skip list says (+35% requests/s); the modelship_* series cover the
    # prediction routes and the /metrics route above serves them.
    metrics={"enabled": False},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/predict", "/feedback", "/model", "/healthz", "/livez", "/readyz", "/metrics"]},
)
@bentoml.asgi_app(app, path="/")
class ModelService:
    """Serves one registered MLflow model version: validated predictions, metrics and a drift window."""

    def __init__(self) -> None:
        _configure_logging()
        self.runtime = ModelRuntime(ServingSettings.from_env())
        self.runtime.start_loading()

    def __is_ready__(self) -> bool:
        return self.runtime.ready

    # The prediction store's writer is a task on this worker's event loop: BentoML runs the
    # hooks in the worker that serves the routes, after creating the service there.
    @bentoml.on_startup
    async def start_store(self) -> None:
        self.runtime.start_store()

    @bentoml.on_shutdown
    async def shutdown(self) -> None:
        await self.runtime.close_store()
        self.runtime.close()
