"""Sending generated audio over HTTP as it arrives: encoded bytes, or server-sent events.

Shared by music and speech. `audio` is an async iterator of mono float32 arrays; `finish` is
awaited exactly once however the response ends (done, error, client gone), and is what closes
the gRPC streams.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np

from gateway.audio_encoding import StreamEncoder

Finish = Callable[[], Awaitable[None]]


async def audio_bytes(audio: AsyncIterator[np.ndarray], fmt: str, sample_rate: int, finish: Finish):
    encoder = StreamEncoder(fmt, sample_rate)
    try:
        async for piece in audio:
            if data := encoder.encode(piece):
                yield data
        if data := encoder.finish():
            yield data
    finally:  # also when the HTTP client disconnects: the gRPC stream is cancelled
        await finish()


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def sse_events(audio: AsyncIterator[np.ndarray], fmt: str, sample_rate: int, finish: Finish, kind: str):
    """OpenAI's speech SSE shape: `<kind>.audio.delta` events with base64 audio, then one `<kind>.audio.done`."""
    encoder = StreamEncoder(fmt, sample_rate)
    samples = 0
    try:
        async for piece in audio:
            samples += len(piece)
            if data := encoder.encode(piece):
                yield _event({"type": f"{kind}.audio.delta", "audio": base64.b64encode(data).decode()})
        if data := encoder.finish():
            yield _event({"type": f"{kind}.audio.delta", "audio": base64.b64encode(data).decode()})
        yield _event({"type": f"{kind}.audio.done", "sample_rate": sample_rate, "duration": samples / sample_rate,
                      "format": fmt})
    except Exception as error:  # headers are sent: report in-band
        yield _event({"type": "error", "error": {"message": str(error), "type": "server_error"}})
    finally:
        await finish()
