"""The tritone HTTP gateway: HTTP requests in, gRPC streams to Triton, audio out.

The request schemas follow the models' configs (gateway/catalog.py, gateway/schemas.py): the routes are
installed from what is known when the app is made (nothing yet), again once the lifespan has read the
models' limits from Triton, and again whenever a model's limits change (a model loaded or reloaded).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tritone.gateway import errors
from tritone.gateway.auth import document_auth, limiter_for
from tritone.gateway.catalog import ModelCatalog
from tritone.gateway.database import Database
from tritone.gateway.job_runner import JobRunner
from tritone.gateway.job_store import JobStore, replica_id
from tritone.gateway.metrics import GatewayMetrics
from tritone.gateway import tracing
from tritone.gateway.middleware import REQUEST_ID, RequestCounter, RequestGuard, RequestId
from tritone.gateway.model_manager import ModelManager
from tritone.gateway.routes import health
from tritone.gateway.routes import jobs
from tritone.gateway.routes import models
from tritone.gateway.routes import music
from tritone.gateway.routes import speech
from tritone.gateway.routes import voices
from tritone.gateway.routes import web
from tritone.gateway.model_facts import ModelFacts
from tritone.gateway.schemas import Bodies
from tritone.gateway.settings import Settings
from tritone.gateway.triton import Triton
from tritone.gateway.voice_store import VoiceStore
from tritone.serving import log_format


def install_routes(app: FastAPI, facts: dict[str, ModelFacts]) -> None:
    """(Re)install the gateway's routes, their request schemas built from the models' `facts`."""
    settings = app.state.settings
    bodies = Bodies.build(settings, facts)
    app.router.routes[:] = app.state.builtin_routes  # /openapi.json, /docs, /redoc
    for router in (music.router(bodies), speech.router(bodies), voices.router(facts, settings), jobs.router(bodies),
                   models.router, health.router, web.router):
        app.include_router(router)
    app.openapi_schema = None  # documented again from the new schemas


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        database = Database.for_settings(settings)
        try:
            await asyncio.to_thread(database.migrate)  # DatabaseUnreachable: the gateway does not start
        except BaseException:
            database.close()
            raise
        app.state.database = database
        if not tracing.enabled():
            tracing.configure()  # on when OTEL_EXPORTER_OTLP_ENDPOINT is set
        app.state.triton = Triton(settings)
        app.state.models = ModelManager(app.state.triton, settings.idle_unload_s, app.state.metrics)
        app.state.models.start()
        app.state.catalog = catalog = ModelCatalog(app.state.triton, settings)
        catalog.ensure_ready = app.state.models.ensure_ready
        catalog.on_change = lambda: install_routes(app, dict(catalog.facts))
        app.state.models.on_loaded = lambda name: catalog.refresh((name,))
        await catalog.refresh()
        replica = settings.replica_id or replica_id()
        app.state.jobs = JobStore(database, replica=replica, lease_s=settings.job_lease_s)
        app.state.voices = VoiceStore(database)
        if database.shared:  # per-key stream limits counted over every replica
            app.state.limiter = limiter_for(settings, database, replica)
            app.state.limiter.start()
        app.state.job_runner = JobRunner(app.state.jobs, app.state.triton, app.state.metrics, settings,
                                         ensure_ready=app.state.models.ensure_ready, catalog=catalog,
                                         voice_store=app.state.voices)
        await app.state.job_runner.start()
        yield
        await app.state.job_runner.stop()
        if database.shared:
            await app.state.limiter.stop()
        app.state.jobs.close()
        app.state.voices.close()
        database.close()
        await app.state.models.stop()
        await app.state.triton.close()
        tracing.shutdown()  # the spans still batched are sent

    app = FastAPI(title="tritone", version="0.1.0", lifespan=lifespan, docs_url=None,  # /docs: routes/web.py
                  description="Streaming audio generation on NVIDIA Triton Inference Server.")
    app.state.settings = settings
    log_format.configure("tritone.gateway", settings.log_format, current=REQUEST_ID.get)
    app.state.builtin_routes = list(app.router.routes)
    app.state.metrics = GatewayMetrics()
    app.state.limiter = limiter_for(settings)
    errors.install(app)
    # pure ASGI (gateway/middleware.py): a stream that fails midway stays cut off for the client
    app.add_middleware(RequestGuard, guard=voices.upload_size_guard)  # inner: the requests counter sees its 413s
    app.add_middleware(RequestCounter, metrics=app.state.metrics)

    # every layer sees the client the trusted proxies name, and no one else's X-Forwarded-For
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    app.add_middleware(RequestId)  # around everything: every response, refusals included, carries its id

    install_routes(app, {})
    document_auth(app, settings)
    return app
