"""The operator's own HTTP endpoints (probes, metrics, the Alertmanager webhook), served by
uvicorn inside kopf's event loop."""

from __future__ import annotations

import contextlib
import hmac
import logging
from typing import Callable

import kopf
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from modelship.api import format_errors
from modelship.operator import metrics
from modelship.operator.alerts import AlertReceiver, WebhookPayload

log = logging.getLogger("modelship.operator.http")


class BodyTooLarge(Exception):
    pass


def read_token(path: str) -> bytes | None:
    """The webhook's bearer token, read on every call so a rotated Secret takes effect."""
    try:
        with open(path, "rb") as handle:
            token = handle.read().strip()
    except OSError as error:
        log.error("cannot read the alert webhook token file %s: %s", path, error.strerror)
        return None
    return token or None


def authorized(header: str | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time (for a given token length)."""
    scheme, _, presented = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        presented = ""
    # compare_digest takes as long for a wrong token of any length; it only leaks the length.
    return hmac.compare_digest(presented.strip().encode(), token) and bool(presented)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(code: int, body: dict, **headers: str) -> JSONResponse:
    metrics.ALERT_WEBHOOK_REQUESTS.labels(str(code)).inc()
    return JSONResponse(body, status_code=code, headers=headers or None)


def build_app(is_ready: Callable[[], bool], alerts: AlertReceiver | None = None, token_file: str | None = None, max_body_bytes: int = 1 << 20) -> FastAPI:
    app = FastAPI(title="modelship-operator", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        # Answering at all proves the event loop is not blocked.
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(response: Response) -> dict[str, str]:
        if is_ready():
            return {"status": "ready"}
        response.status_code = 503
        return {"status": "starting"}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if alerts is None or not token_file:
        log.warning("the Alertmanager webhook POST /alerts is off: no token file (MODELSHIP_ALERT_TOKEN_FILE)")
        return app

    @app.post("/alerts")
    async def receive_alerts(request: Request) -> Response:
        """Alertmanager's webhook (payload version 4), authenticated by a bearer token."""
        token = read_token(token_file)
        if token is None:
            return _answer(503, {"error": "the webhook token is not readable"})
        if not authorized(request.headers.get("authorization"), token):
            return _answer(401, {"error": "a valid bearer token is required"}, **{"WWW-Authenticate": "Bearer"})
        try:
            body = await read_body(request, max_body_bytes)
        except BodyTooLarge:
            return _answer(413, {"error": f"the body exceeds {max_body_bytes} bytes"})
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as error:
            return _answer(400, {"error": "not an Alertmanager webhook payload (version 4)", "detail": format_errors(error, root="")[:20]})
        try:
            counts = await alerts.receive(payload)
        except kopf.TemporaryError as error:
            return _answer(503, {"error": f"could not record the alerts: {error}"})
        except Exception:
            log.exception("recording alerts failed")
            return _answer(500, {"error": "could not record the alerts"})
        return _answer(200, {"alerts": counts})

    return app


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: kopf owns SIGTERM/SIGINT in this process."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    @contextlib.contextmanager
    def capture_signals(self):  # uvicorn >= 0.29
        yield


def server(app: FastAPI, host: str, port: int) -> EmbeddedServer:
    return EmbeddedServer(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False))
