"""Explicit model control: load on demand, unload what has been idle too long, reload what is unhealthy,
and say honestly why a model cannot serve (for 503s and /readyz)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from tritone.gateway.errors import APIError, unavailable
from tritone.gateway.metrics import GatewayMetrics
from tritone.gateway.triton import ModelState, Triton

TRITON_UNREACHABLE = "Triton is not reachable"
TRITON_NOT_READY = "Triton is not ready (starting, shutting down, or another model is not ready)"
log = logging.getLogger("tritone.gateway")


class ModelManager:
    def __init__(self, triton: Triton, idle_unload_s: float, metrics: GatewayMetrics | None = None):
        self.triton = triton
        self.idle_unload_s = idle_unload_s
        self.metrics = metrics
        self.last_used: dict[str, float] = {}
        self.unhealthy: dict[str, str] = {}  # model -> why; being reloaded
        self._task: asyncio.Task | None = None
        self._reloads: set[asyncio.Task] = set()
        self.on_loaded: Callable[[str], Awaitable[None]] | None = None  # after a load: read its limits again
        triton.on_unhealthy = self.mark_unhealthy

    def touch(self, name: str) -> None:
        self.last_used[name] = time.monotonic()

    async def ensure_ready(self, name: str) -> None:
        """Refuse a model being reloaded; load `name` if idle unloading is on and it is not ready."""
        self.touch(name)
        if name in self.unhealthy:
            raise unavailable(self.problem(name, None), "model_unhealthy")
        if self.idle_unload_s <= 0 or await self.triton.model_ready(name):  # never unloaded: nothing to check
            return
        log.info("loading %s on demand", name)
        await self.triton.load(name)
        if not await self.triton.model_ready(name):
            raise APIError(503, f"model {name} is not ready", type="server_error", code="model_not_ready",
                           headers={"Retry-After": "5"})
        await self._loaded(name)

    async def _loaded(self, name: str) -> None:
        if self.on_loaded is not None:
            await self.on_loaded(name)

    # -- why a model cannot serve ------------------------------------------------------

    def problem(self, name: str, state: ModelState | None) -> str | None:
        """What keeps `name` from serving, from its repository `state`; None when it can."""
        if name in self.unhealthy:
            return f"{name} is not healthy ({self.unhealthy[name]}); it is being reloaded"
        if state is None:
            return f"{name} is not in Triton's model repository"
        if state.state == "READY":
            return None
        if state.state in ("LOADING", "UNLOADING"):
            return f"{name} is {state.state.lower()}"
        why = state.reason or state.state.lower() or "unloaded"
        how = "it is loaded again on the next request" if self.idle_unload_s > 0 else \
            f"load it with POST /v1/models/{name}/load"
        return f"{name} is not loaded ({why}): {how}"

    async def held(self, names) -> list[str]:
        """Those of `names` that Triton's repository holds (all of them when Triton cannot say). A configured speech
        model it does not hold (a deployment without that family) is not served, and keeps no other from serving."""
        try:
            present = {model.name for model in await self.triton.models()}
        except APIError:
            return list(names)
        return [name for name in names if name in present]

    async def state(self, name: str) -> ModelState | None:
        return next((model for model in await self.triton.models() if model.name == name), None)

    async def unavailable(self, name: str) -> APIError:
        """The 503 for a request Triton refused because `name` is unloaded or unloading."""
        reason = self.problem(name, await self.state(name)) or f"{name} was not loaded when the request arrived"
        return unavailable(reason, "model_unavailable")

    async def not_ready_reason(self, names: tuple[str, ...]) -> str | None:
        """Why the gateway cannot serve (Triton unreachable or not ready, a model not serving); None when ready."""
        try:
            states = {model.name: model for model in await self.triton.models()}
        except APIError:
            return TRITON_UNREACHABLE
        if reason := next((reason for name in names if (reason := self.problem(name, states.get(name)))), None):
            return reason
        if not await self.triton.server_ready():  # also while any other model is not ready
            return TRITON_NOT_READY
        return None

    # -- recovery ------------------------------------------------------------------------

    def mark_unhealthy(self, name: str, reason: str) -> None:
        """`name` cannot serve (its stub died or hangs): refuse it and reload it in the background, once."""
        if name in self.unhealthy:
            return
        self.unhealthy[name] = reason
        log.warning("%s is unhealthy: %s; reloading it", name, reason)
        task = asyncio.create_task(self._reload(name), name=f"reload-{name}")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self, name: str) -> None:
        """Unload (bounded: Triton waits for the dead stub's requests) and load again through the repository API."""
        started = time.monotonic()
        outcome = "failed"
        try:
            await self.triton.unload(name, wait_s=self.triton.settings.reload_unload_wait_s)
            unloaded_s = time.monotonic() - started
            await self.triton.load(name)
            if await self.triton.model_ready(name):
                outcome = "ok"
                log.info("%s reloaded in %.1f s (unload %.1f s)", name, time.monotonic() - started, unloaded_s)
                await self._loaded(name)
        except APIError as error:
            log.warning("reloading %s failed: %s", name, error.message)
        finally:  # also after a failure: the next failing request marks it again and retries
            del self.unhealthy[name]
            if self.metrics is not None:
                self.metrics.model_reloads.labels(name, outcome).inc()

    # -- idle unloading ------------------------------------------------------------------

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
        for task in (self._task, *self._reloads):
            if task:
                task.cancel()
