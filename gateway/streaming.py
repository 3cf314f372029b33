"""Sending generated audio over HTTP as it arrives: encoded bytes, or server-sent events.

Shared by music and speech. `GenerationStream` is the response. It awaits `finish` (which closes
the gRPC streams and gives the key's stream slot back) exactly once however the response ends:
done, failed, or client gone. It does so itself, shielded from the cancellation a disconnect
brings, instead of in the body generator's `finally`, which runs late (at garbage collection)
when the response is cancelled while the generator waits at `yield`.

A failure after the first byte must not look like a complete file: an audio stream is cut off
without the chunked terminator, so every HTTP client reports an incomplete body (uvicorn logs
"ASGI callable returned without completing response." and closes the connection); an SSE stream
gets an `error` event, then its end. Both count in tritone_gateway_streams_failed_total.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import numpy as np
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tritone.client import ClientError
from tritone.gateway.audio_encoding import StreamEncoder, content_type, encode_audio
from tritone.gateway.errors import from_client_error
from tritone.gateway.metrics import GatewayMetrics

log = logging.getLogger("tritone.gateway")

Finish = Callable[[], Awaitable[None]]
FINISH_TIMEOUT_S = 10.0  # closing the gRPC streams takes milliseconds; never let a response hang on it


async def audio_bytes(audio: AsyncIterator[np.ndarray], fmt: str, sample_rate: int) -> AsyncIterator[bytes]:
    encoder = StreamEncoder(fmt, sample_rate)
    async for piece in audio:
        if data := encoder.encode(piece):
            yield data
    if data := encoder.finish():
        yield data


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def sse_events(audio: AsyncIterator[np.ndarray], fmt: str, sample_rate: int, kind: str,
                     usage: Callable[[], dict | None],
                     captions: Callable[[], list[dict]] = list) -> AsyncIterator[bytes]:
    """OpenAI's speech SSE shape: `<kind>.audio.delta` events with base64 audio, then one `<kind>.audio.done`
    carrying `usage` (the LM's token counts, read when the audio has ended). `captions` gives the sentence
    captions completed so far: each is sent as a `<kind>.caption` event after its audio."""
    encoder = StreamEncoder(fmt, sample_rate)
    samples = 0
    async for piece in audio:
        samples += len(piece)
        if data := encoder.encode(piece):
            yield _event({"type": f"{kind}.audio.delta", "audio": base64.b64encode(data).decode()})
        for caption in captions():
            yield _event({"type": f"{kind}.caption", **caption})
    if data := encoder.finish():
        yield _event({"type": f"{kind}.audio.delta", "audio": base64.b64encode(data).decode()})
    for caption in captions():
        yield _event({"type": f"{kind}.caption", **caption})
    counted = usage()  # None when the model reported no token counts
    yield _event({"type": f"{kind}.audio.done", "sample_rate": encoder.sample_rate_out,
                  "duration": samples / sample_rate, "format": fmt, **({"usage": counted} if counted else {})})


def sse_error(error: Exception) -> bytes:
    """The in-band report of a stream that failed after its headers were sent."""
    code = from_client_error(error).code if isinstance(error, ClientError) else None
    return _event({"type": "error", "error": {"message": str(error), "type": "server_error", "code": code}})


class GenerationStream(StreamingResponse):
    """A streamed generation that is always finished, and never ends looking complete when it failed."""

    def __init__(self, body: AsyncIterator[bytes], finish: Finish, metrics: GatewayMetrics, *, media_type: str,
                 headers: dict[str, str], error_event: Callable[[Exception], bytes] | None = None):
        super().__init__(body, media_type=media_type, headers=headers)
        self._finish, self._metrics, self._error_event = finish, metrics, error_event

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception as error:  # noqa: BLE001 - the status is sent: the failure can only be shown in the body
            self._metrics.streams_failed.inc()
            if self._error_event is None:
                log.warning("stream failed after its first byte, cut off without its end: %s", error)
                return  # no terminating chunk: the client's read ends incomplete
            log.warning("stream failed after its first byte, ended by an error event: %s", error)
            await send({"type": "http.response.body", "body": self._error_event(error), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream_until_disconnect(receive, send)
        finally:  # done, failed or disconnected (cancelled): now, not when the body generator is collected
            with anyio.move_on_after(FINISH_TIMEOUT_S, shield=True):
                await self.body_iterator.aclose()
                await self._finish()


    async def _stream_until_disconnect(self, receive: Receive, send: Send) -> None:
        """Stream, and stop as soon as the client hangs up, also while nothing is being sent (a FLAC body
        comes whole at the end; Starlette under ASGI 2.4 notices a hang-up only when a send fails)."""
        async with anyio.create_task_group() as group:
            async def stream() -> None:
                try:
                    await self.stream_response(send)
                except OSError:  # the client is gone (ASGI 2.4 servers raise it from send)
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


async def whole_file(audio: AsyncIterator[np.ndarray], fmt: str, sample_rate: int, finish: Finish,
                     headers: dict[str, str]) -> Response:
    """The generation's audio as one file once it ends (`stream: false`): exact length, sizes and headers."""
    try:
        samples = np.concatenate([np.zeros(0, np.float32), *[piece async for piece in audio]])
    finally:
        await finish()
    return Response(encode_audio(samples, sample_rate, fmt), media_type=content_type(fmt, sample_rate),
                    headers=headers)


def respond(audio: AsyncIterator[np.ndarray], fmt: str, sample_rate: int, finish: Finish, metrics: GatewayMetrics,
            *, sse_kind: str | None, headers: dict[str, str],
            usage: Callable[[], dict | None] = lambda: None,
            captions: Callable[[], list[dict]] = list) -> GenerationStream:
    """The response for a generation's audio: `fmt` bytes, or SSE events named `<sse_kind>.audio.*` if set."""
    if sse_kind:
        return GenerationStream(sse_events(audio, fmt, sample_rate, sse_kind, usage, captions), finish, metrics,
                                media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"},
                                error_event=sse_error)
    return GenerationStream(audio_bytes(audio, fmt, sample_rate), finish, metrics,
                            media_type=content_type(fmt, sample_rate), headers=headers)
