"""Explicit model control: load on demand, unload what has been idle too long."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.errors import APIError
from gateway.triton import Triton

log = logging.getLogger("tritone.gateway")


class ModelManager:
    def __init__(self, triton: Triton, idle_unload_s: float):
        self.triton = triton
        self.idle_unload_s = idle_unload_s
        self.last_used: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    def touch(self, name: str) -> None:
        self.last_used[name] = time.monotonic()

    async def ensure_ready(self, name: str) -> None:
        """Load `name` if it is not ready (it may have been unloaded for idleness)."""
        self.touch(name)
        if self.idle_unload_s <= 0 or await self.triton.model_ready(name):  # never unloaded: nothing to check
            return
        log.info("loading %s on demand", name)
        await self.triton.load(name)
        if not await self.triton.model_ready(name):
            raise APIError(503, f"model {name} is not ready", type="server_error", code="model_not_ready",
                           headers={"Retry-After": "5"})

    async def unload_idle(self) -> list[str]:
        now = time.monotonic()
        unloaded = []
        for name, used in list(self.last_used.items()):
            if now - used >= self.idle_unload_s and await self.triton.model_ready(name):
                await self.triton.unload(name)
                unloaded.append(name)
                del self.last_used[name]
                log.info("unloaded %s after %.0f s idle", name, now - used)
        return unloaded

    def start(self) -> None:
        if self.idle_unload_s > 0:
            self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.idle_unload_s / 4))
            try:
                await self.unload_idle()
            except APIError as error:
                log.warning("idle unload skipped: %s", error.message)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
