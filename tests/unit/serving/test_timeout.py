"""The request timeout that replaces BentoML's: same 504 behaviour, no timer left behind per request."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from modelship.serving.timeout import RequestTimeout


async def _fast(request: Any) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _slow(request: Any) -> JSONResponse:
    await asyncio.sleep(5)
    return JSONResponse({"ok": True})


async def _slow_stream(request: Any) -> StreamingResponse:
    async def chunks() -> Any:
        yield b"first "
        await asyncio.sleep(1.5)  # past the timeout, after the response started
        yield b"second"

    return StreamingResponse(chunks())


async def _own_timeout(request: Any) -> JSONResponse:
    raise TimeoutError("the app's own")


def _client(timeout: float) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/fast", _fast), Route("/slow", _slow), Route("/stream", _slow_stream), Route("/own", _own_timeout)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=RequestTimeout(app, timeout), raise_app_exceptions=False), base_url="http://test")


def test_requests_leave_no_timer_scheduled() -> None:
    """BentoML's middleware left one 60 s timer per request on the loop (the p99 regression)."""

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        async with _client(timeout=60) as client:
            before = len(loop._scheduled)  # type: ignore[attr-defined]
            answers = await asyncio.gather(*(client.get("/fast") for _ in range(200)))
            assert all(a.status_code == 200 for a in answers)
            return before, len(loop._scheduled)  # type: ignore[attr-defined]

    before, after = asyncio.run(main())
    assert after == before


def test_a_response_not_started_in_time_is_a_504() -> None:
    async def main() -> httpx.Response:
        async with _client(timeout=0.1) as client:
            return await client.get("/slow")

    answer = asyncio.run(main())
    assert answer.status_code == 504
    assert "0.1 seconds" in answer.json()["error"]


def test_a_started_response_is_never_cut_off() -> None:
    # A timeout the first chunk meets even on a stalled machine; the second comes after it.
    async def main() -> httpx.Response:
        async with _client(timeout=1.0) as client:
            return await client.get("/stream")

    answer = asyncio.run(main())
    assert answer.status_code == 200 and answer.text == "first second"


def test_the_apps_own_timeout_error_is_not_a_504() -> None:
    async def main() -> httpx.Response:
        async with _client(timeout=60) as client:
            return await client.get("/own")

    assert asyncio.run(main()).status_code == 500


@pytest.mark.slow
def test_bentoml_builds_the_model_service_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHIP_MODEL_NAME", "unused")
    monkeypatch.setenv("MODELSHIP_MODEL_VERSION", "1")
    from modelship.serving.service import ModelService

    app = ModelService.to_asgi()
    classes = [middleware.cls for middleware in app.user_middleware]
    assert RequestTimeout in classes
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    assert TimeoutMiddleware is RequestTimeout
