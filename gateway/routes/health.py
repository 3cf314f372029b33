"""Operations: liveness, readiness, Prometheus metrics, resource status."""

from __future__ import annotations

import resource

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.auth import REQUIRE_ADMIN
from gateway.dependencies import MetricsDep, SettingsDep, TritonDep
from gateway.errors import APIError

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The gateway process is up")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="Triton is reachable and the music and speech pipelines are ready (503 otherwise)")
async def readyz(triton: TritonDep, settings: SettingsDep):
    if not await triton.server_ready():
        return JSONResponse({"status": "unavailable", "reason": "Triton is not reachable"}, status_code=503,
                            headers={"Retry-After": "2"})
    for model in (settings.pipeline, settings.speech_model):
        if not await triton.model_ready(model):
            return JSONResponse({"status": "unavailable", "reason": f"{model} is not ready"},
                                status_code=503, headers={"Retry-After": "2"})
    return {"status": "ready", "pipeline": settings.pipeline, "speech_model": settings.speech_model}


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
