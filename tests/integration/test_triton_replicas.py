"""Streams balanced over Triton replicas: a gateway whose target names two tritonservers (one address list,
as a headless Service's DNS name resolves to every pod) spreads its streams over both, a stream per pick."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tritone.client.metrics import read_engine_metrics
from tritone.ensemble import tensors as T
from tritone.gateway.settings import Settings
from tritone.serving.triton import TritonServer, free_port

from .stack import family_models, run_gateway

pytestmark = pytest.mark.integration

STREAMS = 12


def test_twelve_streams_through_one_gateway_land_on_both_tritons(tiny_model_repository, tmp_path):
    servers = [TritonServer() for _ in range(2)]
    try:
        for i, server in enumerate(servers):
            server.start(tiny_model_repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         model_config_name="cpu", model_control_mode="explicit",
                         load_models=family_models("orpheus"), log_file=tmp_path / f"tritonserver-{i}.log")
        for server in servers:
            server.wait_ready(timeout=180)
        target = "ipv4:" + ",".join(f"127.0.0.1:{server.grpc_port}" for server in servers)
        settings = Settings(triton_grpc_url=target, triton_metrics_url=servers[0].metrics_url,
                            triton_http_url=f"http://{servers[0].http_url}", data_dir=tmp_path / "gateway",
                            speech_max_sentence_s=0.5, max_streams_per_key=STREAMS)

        async def speak_all(url):
            async with httpx.AsyncClient(timeout=120) as client:
                return await asyncio.gather(*(client.post(f"{url}/v1/audio/speech", json={
                    "input": "Hello there.", "voice": "tara", "response_format": "pcm"}) for _ in range(STREAMS)))

        with run_gateway(settings) as url:
            responses = asyncio.run(speak_all(url))
        assert [r.status_code for r in responses] == [200] * STREAMS
        completed = [read_engine_metrics(server.metrics_url, T.ORPHEUS)["tritone_streams_completed_total"]
                     for server in servers]
        assert sum(completed) == STREAMS and min(completed) >= 1, completed  # every replica took streams
    finally:
        for server in servers:
            server.stop()
