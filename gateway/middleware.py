"""The gateway's middlewares, in pure ASGI: they never proxy a response body.

Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) relays the body through a memory stream
and, whatever the app does, ends it with the chunked terminator. A stream that fails after its
first byte would then look complete, and the relay's extra await at every chunk is where a client
disconnect used to strand the body generator. Here the app talks to the server directly.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tritone.gateway import tracing
from tritone.gateway.metrics import GatewayMetrics


class RequestCounter:
    """Counts responses by route and status (tritone_gateway_requests_total) when they start, and times each
    request to the end of its response (tritone_gateway_request_duration_seconds)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), None

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
                self.metrics.requests.labels(_route(scope), status).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if status is not None:
                self.metrics.request_duration.labels(_route(scope), status).observe(time.perf_counter() - started)


def _route(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", "unmatched")


REQUEST_ID = contextvars.ContextVar("request_id", default="-")  # the request being served, for logs
access = logging.getLogger("tritone.gateway.access")
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII: safe to echo in a header and a log


class RequestId:
    """Every response carries `X-Request-Id`: the client's (visible ASCII, at most 128 characters) or a new
    one; the request's handlers and logs read it from `REQUEST_ID` and `scope["state"]["request_id"]`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        sent = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _CLIENT_REQUEST_ID.fullmatch(sent) else f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        started, status = time.perf_counter(), 0

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            carrier = {key.decode("latin-1"): value.decode("latin-1") for key, value in headers.items()}
            with tracing.server_span(f"HTTP {scope['method']}", carrier, **{
                    "http.request.method": scope["method"], "url.path": scope["path"],
                    "tritone.request_id": request_id}) as current:
                await self.app(scope, receive, tagged_send)
                if current.is_recording():
                    route = _route(scope)
                    current.update_name(f"{scope['method']} {route}")
                    current.set_attributes({"http.route": route, "http.response.status_code": status})
                    if status >= 500:
                        tracing.mark_error(current, f"status {status}")
        finally:
            # one line per request, once its body has ended (or the client left): the key by a digest only
            access.info("%s %s %s %.1f ms", scope["method"], scope["path"], status or "-",
                        1000 * (time.perf_counter() - started),
                        extra={"method": scope["method"], "path": scope["path"], "status": status,
                               "duration_ms": round(1000 * (time.perf_counter() - started), 1),
                               "key": key_digest(headers.get(b"authorization", b""))})
            REQUEST_ID.reset(token)


def key_digest(authorization: bytes) -> str | None:
    """Which key made a request, for logs: a digest of it, never the key."""
    key = authorization.decode("latin-1").removeprefix("Bearer ").strip()
    return f"key_{hashlib.sha256(key.encode()).hexdigest()[:8]}" if key else None


class _App(Response):
    """What `call_next` hands a guard: the app itself, run on the real receive and send when the guard returns it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


Guard = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


class RequestGuard:
    """Runs a `(request, call_next)` function that answers some requests itself before the app (e.g. 413 from
    Content-Length) and passes the others on; it must not read the app's response, which is not materialized."""

    def __init__(self, app: ASGIApp, guard: Guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def call_next(request: Request) -> Response:
            return _App(self.app)

        response = await self.guard(Request(scope, receive), call_next)
        await response(scope, receive, send)
