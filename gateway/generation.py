"""One generation stream to Triton, opened far enough that its errors can still be HTTP statuses.

`Generation.open` waits for the first chunk: a bad prompt or a full server is a 4xx/429 before
any byte of a 200 response is sent; afterwards the stream is consumed chunk by chunk and
closing it (client gone, error, done) cancels the gRPC stream so Triton frees the decode slot.
A stream that then sends nothing for `stream_stall_s` (a dead python stub never answers) is
cancelled and fails with StreamStalled, and its model is reported unhealthy (to be reloaded).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request

from tritone.client import AudioChunk, ClientError, MusicRequest, SpeechRequest, StreamStats
from tritone.gateway import tracing
from tritone.gateway.middleware import REQUEST_ID
from tritone.gateway.errors import APIError, StreamStalled, from_client_error
from tritone.gateway.metrics import GatewayMetrics
from tritone.gateway.triton import Triton

log = logging.getLogger("tritone.gateway")


# refusals of one replica that another may not share: unreachable (down, or its connection lost), stopping
# (draining before exit), every decode slot busy and its queue full
RETRIED = frozenset({"triton_unavailable", "triton_stopping", "server_at_capacity"})


class _Refused(Exception):
    """A stream refused before its first chunk, in a way worth one more try on another replica."""

    def __init__(self, error: APIError):
        super().__init__(error.message)
        self.error = error


def _failure(triton: Triton, model: str, error: ClientError, metrics: GatewayMetrics) -> APIError:
    """`error` as an HTTP error, counted; a model that cannot serve any more (its stub died) is reported."""
    api_error = from_client_error(error)
    metrics.errors.labels(api_error.code or "error").inc()
    if api_error.code == "model_unhealthy":
        triton.on_unhealthy(model, api_error.message)
    return api_error


class Generation:
    def __init__(self, stream: AsyncIterator[AudioChunk], first: AudioChunk, stats: StreamStats, metrics,
                 triton: Triton, model: str, span=None):
        self._stream, self.first, self.stats, self._metrics = stream, first, stats, metrics
        self._span = span  # the stream's trace span, ended by close()
        self._triton, self.model = triton, model
        self.sample_rate = first.sample_rate
        self.completed = first.final
        self.tokens: tuple[int, int] | None = first.usage  # the LM's (input, output) tokens, from the final chunk
        self._closed = False

    @classmethod
    async def open(cls, triton: Triton, model: str, request: MusicRequest | SpeechRequest,
                   metrics: GatewayMetrics) -> "Generation":
        """The stream, its first chunk received. A stream refused before its first chunk by a replica that cannot
        take it now (unreachable, stopping, at capacity) is opened once more: with round_robin the new stream goes
        to the next replica. Nothing has been sent to the HTTP client yet, so the retry is invisible to it."""
        try:
            return await cls._open(triton, model, request, metrics, retry=True)
        except _Refused as refused:
            log.warning("%s stream refused before its first chunk (%s: %s); opening it again on the next replica",
                        model, refused.error.code, refused.error.message)
            metrics.streams_retried.labels(refused.error.code).inc()
        return await cls._open(triton, model, request, metrics, retry=False)

    @classmethod
    async def _open(cls, triton: Triton, model: str, request: MusicRequest | SpeechRequest,
                    metrics: GatewayMetrics, retry: bool) -> "Generation":
        stats = StreamStats()
        span = tracing.start(f"triton stream {model}", **{"tritone.model": model, "tritone.request_id": REQUEST_ID.get()})
        try:
            with tracing.within(span):  # its traceparent goes to Triton with the stream
                # In a thread: building a speech stream splits its text into sentences (Unicode segmentation in
                # pure Python, a few hundred ms for a 4096-character input), which would stall every other stream.
                stream = await asyncio.to_thread(triton.stream, model, request, stats)
        except BaseException as error:
            tracing.mark_error(span, str(error))
            span.end()
            raise
        metrics.active_streams.inc()
        try:
            first = await anext(stream)
        except BaseException as error:
            await stream.aclose()
            metrics.active_streams.dec()
            tracing.mark_error(span, str(error))
            span.end()
            if isinstance(error, ClientError):
                if retry and (refused := from_client_error(error)).code in RETRIED:
                    raise _Refused(refused) from None
                raise _failure(triton, model, error, metrics) from None
            raise
        if stats.time_to_first_audio is not None:
            metrics.time_to_first_audio.labels(model).observe(stats.time_to_first_audio)
            span.set_attribute("tritone.time_to_first_audio_s", stats.time_to_first_audio)
        return cls(stream, first, stats, metrics, triton, model, span)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """Every chunk, the first included, in order. Raises ClientError if the stream fails midway,
        StreamStalled if it sends nothing for `stream_stall_s` (the gRPC stream is cancelled then)."""
        self._metrics.audio.labels(self.model).inc(self.first.seconds)
        yield self.first
        stall_s = self._triton.settings.stream_stall_s
        try:
            while True:
                try:  # after the final chunk only the RPC's end is awaited (the client bounds that itself)
                    async with asyncio.timeout(None if self.completed else stall_s):
                        chunk = await anext(self._stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise StreamStalled(self.model, stall_s) from None
                self.completed = chunk.final
                self.tokens = chunk.usage or self.tokens
                self._metrics.audio.labels(self.model).inc(chunk.seconds)
                yield chunk
        except ClientError as error:
            _failure(self._triton, self.model, error, self._metrics)
            log.warning("generation failed mid-stream: %s", error)
            raise

    def usage(self) -> dict[str, int] | None:
        """OpenAI's `usage` object for the generation's LM tokens, once its final chunk has come."""
        if self.tokens is None:
            return None
        tokens_in, tokens_out = self.tokens
        return {"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stream.aclose()  # cancels the gRPC stream if it is still running
        self._metrics.active_streams.dec()
        if self.completed and self.stats.real_time_factor is not None:
            self._metrics.real_time_factor.labels(self.model).observe(self.stats.real_time_factor)
        elif not self.completed:
            self._metrics.errors.labels("stream_cancelled").inc()
        if self._span is not None:
            self._span.set_attribute("tritone.completed", self.completed)
            if self.tokens is not None:
                self._span.set_attribute("tritone.output_tokens", self.tokens[1])
            if not self.completed:
                tracing.mark_error(self._span, "the stream ended before its final chunk")
            self._span.end()


async def open_for_client(http: Request, key: str, model: str,
                          request: MusicRequest | SpeechRequest) -> tuple[Generation, Callable[[], Awaitable[None]]]:
    """For an HTTP route: load `model` if it was unloaded, take one of the key's concurrent streams, open the
    generation. Returns it and `finish`, which closes it and gives the key's stream back (await it once)."""
    state = http.app.state
    await state.models.ensure_ready(model)
    if model not in state.catalog.facts:  # Triton was not ready when the gateway started: its limits, for the schemas
        await state.catalog.find(model)
    await state.limiter.acquire(key)
    try:
        generation = await Generation.open(state.triton, model, request, state.metrics)
    except BaseException as error:
        state.limiter.release(key)
        if isinstance(error, APIError) and error.code == "model_unavailable":  # say why (unloading?) and what to do
            raise await state.models.unavailable(model) from None
        raise

    async def finish() -> None:
        await generation.close()
        state.limiter.release(key)

    return generation, finish
