"""The gateway's one connection to Triton: generation streams, voice clip encoding, health, models, metrics.

Created once in the app's lifespan and injected into routes (`TritonDep`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, InferRequestedOutput, KeepAliveOptions
from tritonclient.grpc import aio as grpcaio
from tritonclient.utils import InferenceServerException

from tritone.client import AudioChunk, MusicRequest, SpeechRequest, StreamStats, stream_music, stream_speech
from tritone.client.request import tensor_input
from tritone.ensemble import tensors as T
from tritone.gateway.errors import APIError, triton_unavailable
from tritone.gateway import tracing
from tritone.gateway.middleware import REQUEST_ID
from tritone.gateway.settings import Settings
from tritone.gateway.triton_replicas import ReplicaHealth

log = logging.getLogger("tritone.gateway")


RECONNECT_BACKOFF_MAX_MS = 5000


def channel_args() -> list[tuple]:
    """tritonclient's channel defaults, with gRPC's round_robin balancing: every stream (one RPC) takes the next
    connected address, so streams spread over every Triton the target names (`dns:///triton-headless:8001`
    resolves to each ready pod of a headless Service; `ipv4:10.0.0.1:8001,10.0.0.2:8001` lists them); an
    address that cannot be reached gets no new streams while it is down."""
    keepalive = KeepAliveOptions()
    return [("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.lb_policy_name", "round_robin"),
            # a replica that went down is retried after 1 s, doubling up to 5 s (gRPC's default cap is 120 s):
            # once it is back it takes streams again within seconds; while down, round_robin skips it
            ("grpc.initial_reconnect_backoff_ms", 1000),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS)]


@dataclass(frozen=True)
class ModelState:
    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, UNLOADING, or "" when never loaded
    reason: str


class Triton:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.grpc = grpcaio.InferenceServerClient(settings.triton_grpc_url, channel_args=channel_args())
        self.replicas = ReplicaHealth(settings.triton_grpc_url, settings.triton_replica_check_timeout_s)  # /readyz
        self.http = httpx.AsyncClient(timeout=settings.triton_timeout_s)
        # told when a model's streams show it cannot serve (its stub died): (model, why); the ModelManager reloads it
        self.on_unhealthy: Callable[[str, str], None] = lambda model, reason: None

    async def close(self) -> None:
        await self.grpc.close()
        await self.replicas.close()
        await self.http.aclose()

    async def _call(self, coroutine, timeout_s: float | None = None):
        """A unary call with a timeout; unreachable Triton becomes a 503, never a hang."""
        try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the caller's cancellation
            async with asyncio.timeout(timeout_s or self.settings.triton_timeout_s):
                return await coroutine
        except (TimeoutError, grpc.aio.AioRpcError) as error:
            raise triton_unavailable(type(error).__name__) from None
        except InferenceServerException as error:
            if "failed to connect" in str(error).lower() or "unavailable" in str(error.status() or "").lower():
                raise triton_unavailable(error.message()) from None
            raise APIError(400, error.message(), code="triton_error") from None

    async def server_ready(self) -> bool:
        try:
            return bool(await self._call(self.grpc.is_server_ready()))
        except APIError:
            return False

    async def model_ready(self, name: str) -> bool:
        try:
            return bool(await self._call(self.grpc.is_model_ready(name)))
        except APIError:
            return False

    async def models(self) -> list[ModelState]:
        index = await self._call(self.grpc.get_model_repository_index(as_json=True))
        return [ModelState(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", ""))
                for m in index.get("models", [])]

    async def config(self, name: str) -> dict:
        """`name`'s model config as JSON (its parameters, inputs, outputs)."""
        return (await self._call(self.grpc.get_model_config(name, as_json=True)))["config"]

    async def load(self, name: str) -> None:
        """Blocks until loaded: loading a large model takes a while."""
        started = time.monotonic()
        log.info("loading model %s", name)
        await self._call(self.grpc.load_model(name), self.settings.model_load_timeout_s)
        log.info("model %s loaded in %.1f s", name, time.monotonic() - started)

    async def unload(self, name: str, wait_s: float = 60.0) -> None:
        """Unload and wait until Triton has finished (its unload call returns while still UNLOADING)."""
        log.info("unloading model %s", name)
        await self._call(self.grpc.unload_model(name), self.settings.model_load_timeout_s)
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            states = {model.name: model.state for model in await self.models()}
            if states.get(name) != "UNLOADING":
                return
            await asyncio.sleep(0.1)

    async def metrics_text(self) -> str:
        try:
            response = await self.http.get(self.settings.triton_metrics_url)
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise triton_unavailable(f"metrics: {error}") from None
        return response.text

    def stream(self, model: str, request: MusicRequest | SpeechRequest,
               stats: StreamStats | None = None) -> AsyncIterator[AudioChunk]:
        """`model`'s stream for `request`; a speech model speaks a sentence per request, the next started ahead.
        The gRPC request's id is the HTTP request's (a speech sentence's: `<id>-<i>`), so the engine's log lines
        of it carry the id the gateway's do."""
        request_id = REQUEST_ID.get()
        request_id = None if request_id == "-" else request_id
        headers = tracing.traceparent() or None  # the stream's span, for a Triton that traces with OpenTelemetry
        if model in self.settings.speech_models:
            return stream_speech(self.grpc, request, model=model, max_chars=self.settings.speech_max_sentence_chars,
                                 request_id=request_id, timeout=self.settings.stream_timeout_s, stats=stats,
                                 target=self.settings.triton_grpc_url, headers=headers)
        return stream_music(self.grpc, request, model=model, request_id=request_id,
                            timeout=self.settings.stream_timeout_s, stats=stats,
                            target=self.settings.triton_grpc_url, headers=headers)

    async def encode_voice(self, encoder: str, audio: np.ndarray, output: str = T.AUDIO_CODES) -> np.ndarray:
        """A clip (mono float32 at the codec's rate) -> its codes, the encoder's `output` (its one row of the batch:
        [rows, frames] for SNAC's audio_codes, [tokens] for chatterbox_voice's prompt_tokens)."""
        inputs = [tensor_input(T.AUDIO, "FP32", np.ascontiguousarray(audio, np.float32)[None, :])]
        result = await self._call(self.grpc.infer(encoder, inputs, outputs=[InferRequestedOutput(output)]),
                                  self.settings.encode_timeout_s)
        return result.as_numpy(output)[0].astype(np.int64)
