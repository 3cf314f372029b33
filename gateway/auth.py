"""Optional Bearer API keys, and the per-key limit on concurrent generation streams."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Annotated

from fastapi import Depends, Request

from gateway.errors import APIError


def client_key(request: Request) -> str:
    """The caller's API key; without configured keys, the client's address."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return request.client.host if request.client else "anonymous"
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", type="authentication_error",
                       code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
    if token.strip() not in keys:
        raise APIError(403, "unknown API key", type="permission_error", code="invalid_api_key")
    return token.strip()


ClientKey = Annotated[str, Depends(client_key)]


class StreamLimiter:
    """At most `limit` concurrent streams per key; the rest get 429 at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._active: Counter[str] = Counter()
        self._lock = asyncio.Lock()

    async def acquire(self, key: str) -> None:
        async with self._lock:
            if self._active[key] >= self.limit:
                raise APIError(429, f"too many concurrent streams for this key (limit {self.limit})",
                               type="rate_limit_error", code="too_many_streams", headers={"Retry-After": "1"})
            self._active[key] += 1

    def release(self, key: str) -> None:
        self._active[key] -= 1
        if self._active[key] <= 0:
            del self._active[key]
