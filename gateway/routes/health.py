"""Operations: liveness, readiness, Prometheus metrics, resource status."""

from __future__ import annotations

import resource

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tritone.gateway.auth import REQUIRE_ADMIN
from tritone.gateway.dependencies import MetricsDep, SettingsDep, TritonDep
from tritone.gateway.errors import RETRY_AFTER_S, APIError
from tritone.gateway.model_manager import TRITON_NOT_READY, TRITON_UNREACHABLE

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The gateway process is up")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="At least one Triton replica is ready, and the music model and the speech models "
                               "Triton's repository holds are ready and healthy (503 otherwise, with the reason: no "
                               "replica ready, Triton stopping, a model unloading, unloaded or being reloaded); "
                               "`triton_replicas` counts the target's ready replicas")
async def readyz(settings: SettingsDep, triton: TritonDep, request: Request):
    replicas = await triton.replicas.count()
    speech = await request.app.state.models.held(settings.speech_models)
    reason = await request.app.state.models.not_ready_reason((settings.music_model, *speech))
    if replicas.ready == 0 and reason in (None, TRITON_UNREACHABLE, TRITON_NOT_READY):  # a model's own reason first
        reason = f"no Triton replica is ready (0 of {replicas.total} at {settings.triton_grpc_url})"
    if reason is not None:
        return JSONResponse({"status": "unavailable", "reason": reason, "triton_replicas": replicas.as_json()},
                            status_code=503, headers={"Retry-After": RETRY_AFTER_S})
    return {"status": "ready", "music_model": settings.music_model, "speech_models": speech,
            "triton_replicas": replicas.as_json()}


@router.get("/metrics", dependencies=[REQUIRE_ADMIN], summary="Gateway metrics in Prometheus format (an admin key)")
async def metrics(gateway_metrics: MetricsDep):
    return Response(generate_latest(gateway_metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _triton_memory(metrics_text: str) -> dict[str, float]:
    wanted = ("nv_cpu_memory_used_bytes", "nv_cpu_memory_total_bytes", "nv_gpu_memory_used_bytes",
              "nv_gpu_memory_total_bytes")
    values: dict[str, float] = {}
    for line in metrics_text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


@router.get("/v1/resources", dependencies=[REQUIRE_ADMIN],
            summary="Gateway process memory, and Triton's CPU/GPU memory from its metrics (an admin key)")
async def resources(triton: TritonDep):
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        triton_memory = _triton_memory(await triton.metrics_text())
    except APIError:
        triton_memory = None
    return {"gateway": {"max_rss_bytes": peak_rss}, "triton": triton_memory}
