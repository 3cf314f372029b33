"""Bearer API keys (generation keys and admin keys), who a client is, and the limits on concurrent streams.

Generation routes need a key of TRITONE_API_KEYS (or an admin key) when TRITONE_API_KEYS is set, and are open
otherwise. Admin routes (model control, /metrics, /v1/resources) need a key of TRITONE_ADMIN_KEYS as soon as any key
is configured: with only TRITONE_API_KEYS set they are refused to everyone. Without any key everything is open.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from tritone.gateway.errors import RETRY_AFTER_S, APIError
from tritone.gateway.settings import Settings

IPV6_CLIENT_PREFIX = 64  # one IPv6 client usually holds a whole /64: its addresses count as one client


def client_address(request: Request) -> str:
    """Who an anonymous client is: its address (an IPv6 one by its /64), as the trusted proxies report it."""
    host = request.client.host if request.client else "anonymous"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:  # ::ffff:a.b.c.d is the IPv4 client a.b.c.d
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", type="authentication_error",
                       code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def _one_of(token: str, keys: list[str]) -> bool:
    """Whether `token` is one of `keys`, compared in constant time."""
    return any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)


def _unknown_key() -> APIError:
    return APIError(401, "unknown API key", type="authentication_error", code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"})  # as OpenAI answers an incorrect key


def client_key(request: Request) -> str:
    """The caller's API key (a generation or an admin key); without configured keys, the client's address."""
    settings: Settings = request.app.state.settings
    if not settings.api_keys:
        return client_address(request)
    token = _bearer_token(request)
    if not _one_of(token, settings.api_keys + settings.admin_keys):
        raise _unknown_key()
    return token


def admin_key(request: Request) -> str:
    """The caller's admin key; without any configured key, the client's address (everything is open)."""
    settings: Settings = request.app.state.settings
    if not admin_protected(settings):
        return client_address(request)
    token = _bearer_token(request)
    if _one_of(token, settings.admin_keys):
        return token
    if _one_of(token, settings.api_keys):
        raise APIError(403, "this route needs an admin key (TRITONE_ADMIN_KEYS), not a generation key",
                       type="permission_error", code="admin_key_required")
    raise _unknown_key()


def admin_protected(settings: Settings) -> bool:
    return bool(settings.api_keys or settings.admin_keys)


ClientKey = Annotated[str, Depends(client_key)]
REQUIRE_KEY = Depends(client_key)
REQUIRE_ADMIN = Depends(admin_key)


class StreamLimiter:
    """At most `limit` concurrent streams per key and, when `total` is set, at most `total` in all (the anonymous
    clients' shared cap); the rest get 429 at once."""

    def __init__(self, limit: int, total: int | None = None):
        self.limit, self.total = limit, total
        self._active: Counter[str] = Counter()
        self._lock = asyncio.Lock()

    async def acquire(self, key: str) -> None:
        async with self._lock:
            if self.total is not None and self._active.total() >= self.total:
                raise too_many_anonymous(self.total)
            if self._active[key] >= self.limit:
                raise too_many_streams(self.limit)
            self._active[key] += 1

    def release(self, key: str) -> None:
        self._active[key] -= 1
        if self._active[key] <= 0:
            del self._active[key]


def too_many_anonymous(total: int) -> APIError:
    return APIError(429, f"the server's {total} concurrent streams without an API key are all in use",
                    type="rate_limit_error", code="too_many_anonymous_streams", headers={"Retry-After": RETRY_AFTER_S})


def too_many_streams(limit: int) -> APIError:
    return APIError(429, f"too many concurrent streams for this key (limit {limit})", type="rate_limit_error",
                    code="too_many_streams", headers={"Retry-After": "1"})


def limiter_for(settings: Settings, database=None, replica: str | None = None):
    """Keyed clients are limited per key; anonymous ones per client address and, together, by a global cap.

    Counted in this process, or, when `database` is shared by several replicas (PostgreSQL), in it
    (gateway/stream_slots.py), so that the limits hold across replicas.
    """
    total = None if settings.api_keys else settings.max_anonymous_streams
    if database is not None and database.shared:
        from tritone.gateway.stream_slots import SharedStreamLimiter

        return SharedStreamLimiter(database, settings.max_streams_per_key, total, replica=replica,
                                   ttl_s=settings.stream_slot_ttl_s)
    return StreamLimiter(settings.max_streams_per_key, total)


def served_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, flattened (newer FastAPI versions list an included router as one entry holding its routes)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from served_routes(included.routes) if included is not None else (route,)


def route_guard(route: APIRoute) -> str | None:
    """Which key `route` asks for: "admin", "key" or None (open)."""
    calls = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        calls.add(dependant.call)
        pending.extend(dependant.dependencies)
    return "admin" if admin_key in calls else "key" if client_key in calls else None


def _guarded(guard: str | None, settings: Settings) -> bool:
    return guard == "admin" and admin_protected(settings) or guard == "key" and bool(settings.api_keys)


AUTH_RESPONSES = {"401": "Missing or unknown API key (WWW-Authenticate: Bearer)",
                  "403": "A generation key on an admin route"}


def document_auth(app: FastAPI, settings: Settings) -> None:
    """Make the OpenAPI document list 401/403 and the bearer scheme on exactly the routes that can refuse a key with
    these settings, whatever the routes' own `responses` say."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer"}
            for route in served_routes(app.routes):
                if isinstance(route, APIRoute) and route.include_in_schema:
                    _document_route(schema["paths"][route.path_format], route, settings)
        return app.openapi_schema

    app.openapi = openapi


def _document_route(path_item: dict, route: APIRoute, settings: Settings) -> None:
    guarded = _guarded(route_guard(route), settings)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for method in route.methods:
        operation = path_item[method.lower()]
        responses = operation["responses"]
        responses.pop("422", None)  # FastAPI's own: tritone answers invalid input with OpenAI's 400 (gateway/errors.py)
        for status, description in AUTH_RESPONSES.items():
            responses.pop(status, None)
            if guarded and (status == "401" or route_guard(route) == "admin"):
                responses[status] = {"description": description, "content": error}
        if guarded:
            operation["security"] = [{"bearer": []}]
