"""POST /v1/audio/music: text to music, streamed as it is generated."""

from __future__ import annotations

import base64
import json

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from gateway.audio_encoding import StreamEncoder, content_type, encode_audio
from gateway.auth import ClientKey
from gateway.dependencies import LimiterDep, MetricsDep, TritonDep
from gateway.generation import Generation
from gateway.schemas import ERROR_RESPONSES, MusicBody

router = APIRouter(tags=["music"])

AUDIO_TYPES = {"audio/wav": {}, "audio/flac": {}, "audio/mpeg": {}, "audio/ogg": {}, "audio/pcm": {},
               "text/event-stream": {}}


@router.post(
    "/v1/audio/music",
    response_class=Response,
    responses={200: {"content": AUDIO_TYPES, "description": "Audio in response_format, or SSE events"},
               **ERROR_RESPONSES},
    summary="Generate music from a text prompt",
)
async def create_music(body: MusicBody, key: ClientKey, triton: TritonDep, limiter: LimiterDep, metrics: MetricsDep,
                       request: Request):
    await request.app.state.models.ensure_ready(request.app.state.settings.pipeline)
    await limiter.acquire(key)
    try:
        generation = await Generation.open(triton, body.to_request(), metrics)
    except BaseException:
        limiter.release(key)
        raise

    async def finish():
        await generation.close()
        limiter.release(key)

    media_type = content_type(body.response_format, generation.sample_rate)
    headers = {"X-Sample-Rate": str(generation.sample_rate)}
    if not body.stream:
        try:
            audio = np.concatenate([chunk.audio async for chunk in generation.chunks()])
        finally:
            await finish()
        return Response(encode_audio(audio, generation.sample_rate, body.response_format), media_type=media_type,
                        headers=headers)
    if body.stream_format == "sse":
        return StreamingResponse(sse_events(generation, body.response_format, finish), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache"})
    return StreamingResponse(audio_bytes(generation, body.response_format, finish), media_type=media_type,
                             headers=headers)


async def audio_bytes(generation: Generation, fmt: str, finish):
    encoder = StreamEncoder(fmt, generation.sample_rate)
    try:
        async for chunk in generation.chunks():
            if data := encoder.encode(chunk.audio):
                yield data
        if data := encoder.finish():
            yield data
    finally:  # also when the HTTP client disconnects: the gRPC stream is cancelled
        await finish()


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def sse_events(generation: Generation, fmt: str, finish):
    """OpenAI's speech SSE shape: delta events with base64 audio, then one done event."""
    encoder = StreamEncoder(fmt, generation.sample_rate)
    samples = 0
    try:
        async for chunk in generation.chunks():
            samples += len(chunk.audio)
            if data := encoder.encode(chunk.audio):
                yield _event({"type": "music.audio.delta", "audio": base64.b64encode(data).decode()})
        if data := encoder.finish():
            yield _event({"type": "music.audio.delta", "audio": base64.b64encode(data).decode()})
        yield _event({"type": "music.audio.done", "sample_rate": generation.sample_rate,
                      "duration": samples / generation.sample_rate, "format": fmt})
    except Exception as error:  # headers are sent: report in-band
        yield _event({"type": "error", "error": {"message": str(error), "type": "server_error"}})
    finally:
        await finish()
