"""BentoML's request timeout (``traffic.timeout``), without its per-request timer leak.

BentoML 1.4's ``TimeoutMiddleware`` arms ``loop.call_later(timeout, ...)`` for every request
and never cancels it, and runs the app in an extra task. At 1,300 requests/s with the 60 s
timeout that is ~80,000 live timers (each with a future, a context and a bound method): the
heap grows ~750 bytes a request for a minute, every full garbage collection walks all of it,
and the p99 latency of the model server climbed from 40 to 190 ms over 50 s of load
(docs/benchmarks.md). The configuration cannot turn it off (``timeout`` must be > 0).

:class:`RequestTimeout` keeps the behaviour — a request whose response has not started within
the timeout is cancelled and answered 504 — with one timer per request that is cancelled when
the request ends, and no extra task. :func:`install` puts it in place of BentoML's class,
which ``ServiceAppFactory`` looks up when it builds the ASGI app.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class RequestTimeout:
    """ASGI middleware: 504 when the response has not started within ``timeout`` seconds."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_disarm(message: dict[str, Any]) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # a response under way is never cut off
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, send_and_disarm)
        except TimeoutError:
            if started or not deadline.expired():  # the app's own TimeoutError, or too late for a 504
                raise
            from starlette.responses import JSONResponse

            await JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"}, status_code=504)(scope, receive, send)


def install() -> None:
    """Replace BentoML's ``TimeoutMiddleware`` (looked up by name when the app is built)."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc,assignment]
