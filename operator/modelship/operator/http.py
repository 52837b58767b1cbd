"""The operator's own HTTP endpoints (probes, metrics; later the Alertmanager webhook),
served by uvicorn inside kopf's event loop."""

from __future__ import annotations

import contextlib
from typing import Callable

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def build_app(is_ready: Callable[[], bool]) -> FastAPI:
    app = FastAPI(title="modelship-operator", docs_url=None, redoc_url=None)

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
