"""Streaming one request to a decoupled pipeline (musicgen, orpheus) over Triton's gRPC bidirectional stream.

Both families share one contract: one response per audio chunk, indices 0, 1, 2, ..., the last
flagged final, errors as a message starting with the gRPC status. `stream_chunks` is that
contract; `stream_music` and `client.speech.stream_speech` only build the inputs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from grpc.aio import AioRpcError
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient

from tritone.ensemble import tensors as T

from .errors import error_from_rpc, error_from_stream
from .request import MusicRequest, build_inputs
from .response import AudioChunk, ChunkSequence, parse_result
from .stats import StreamStats


async def stream_chunks(
    url: str | InferenceServerClient,
    model: str,
    inputs: list[InferInput],
    *,
    expect_codes: bool = False,
    request_id: str | None = None,
    timeout: float | None = None,
    stats: StreamStats | None = None,
    target: str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[AudioChunk]:
    """Send one request to `model` and yield its audio chunks in arrival order (`headers`: gRPC metadata,
    e.g. a W3C traceparent).

    `url` is "host:port" or an open aio client (reused, not closed; `target` names its server in
    errors). `timeout` is a deadline in seconds for the whole stream. Raises GenerationError for
    server errors, ServerUnavailableError, and StreamContractError when chunks arrive out of
    order, twice, or without a final response. Closing the iterator or cancelling its task
    cancels the gRPC stream, so the server stops generating.
    """
    sequence = ChunkSequence(expect_codes=expect_codes)
    owns_client = isinstance(url, str)
    client = InferenceServerClient(url) if owns_client else url
    target = url if owns_client else target or "the given client's server"
    responses = None

    async def requests():
        yield {
            "model_name": model,
            "inputs": inputs,
            "request_id": request_id or uuid.uuid4().hex,
            "parameters": {"triton_enable_empty_final_response": True},
        }

    try:
        if stats is not None:
            stats.start()
        responses = client.stream_infer(requests(), stream_timeout=timeout, headers=headers)
        received: asyncio.Queue = asyncio.Queue()
        answered = False  # an error response arrived: like the final one, nothing is left to cancel
        reader = asyncio.create_task(_read(responses, received))
        try:
            while not sequence.done:
                item = await received.get()
                if item is _END:
                    break
                if isinstance(item, AioRpcError):
                    raise error_from_rpc(item, target) from None
                result, error = item
                if error is not None:  # the server's last word on this request: it ends the RPC itself
                    answered = True
                    raise error_from_stream(error)
                chunk = parse_result(result)
                sequence.accept(chunk)
                if chunk is not None:
                    if stats is not None:
                        stats.record(len(chunk.audio), chunk.sample_rate)
                    yield chunk
            sequence.finish()
            if stats is not None:
                stats.finish()
        finally:
            if sequence.done or answered:  # the reader goes on to the server's end of the RPC
                await _uncancellable(_let_server_end(reader, responses))
            else:  # closed early (client gone) or failed: cancel, so the server frees the decode slot
                reader.cancel()
                responses.cancel()
    finally:
        if owns_client:
            await client.close()


_END = object()


async def _read(responses, received: asyncio.Queue) -> None:
    """Every response into `received` as it arrives, whatever the consumer's pace, to the RPC's end.

    Reading eagerly lets a generation that finished while a slow consumer still works through its
    chunks end its RPC from the server's side; a consumer that goes away then cancels nothing."""
    try:
        async for item in responses:
            received.put_nowait(item)
    except AioRpcError as error:
        received.put_nowait(error)
    finally:  # also when the RPC was cancelled under it (a closed channel): the consumer never waits forever
        received.put_nowait(_END)


async def _let_server_end(reader: asyncio.Task, responses, timeout: float = 5.0) -> None:
    """After the final response, wait for the server to end the RPC instead of cancelling it.

    Our request iterator has ended (half-close), so Triton ends the stream as soon as the final
    response is out. Cancelling a stream whose final response has arrived leaks it in Triton
    2.51's gRPC frontend: ~140 KiB of tritonserver heap per 5 s music stream, and the leaked
    responses keep their model referenced, so an unload never finishes and shutdown waits for its
    exit timeout (tests/integration/test_triton_lifecycle.py)."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(reader)
    except TimeoutError:
        reader.cancel()
        responses.cancel()


async def _uncancellable(coroutine) -> None:
    """Run `coroutine` to its end even if the caller is cancelled meanwhile (then re-raise): a consumer that
    stops right after the final chunk must not turn the end of a finished RPC into a cancellation."""
    task = asyncio.ensure_future(coroutine)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def stream_music(
    url: str | InferenceServerClient,
    request: MusicRequest,
    *,
    model: str = T.MUSICGEN,
    request_id: str | None = None,
    timeout: float | None = None,
    stats: StreamStats | None = None,
    target: str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[AudioChunk]:
    """Send a musicgen `request` and yield its audio chunks in arrival order (see `stream_chunks`)."""
    return stream_chunks(url, model, build_inputs(request), expect_codes=request.return_codes,
                         request_id=request_id, timeout=timeout, stats=stats, target=target, headers=headers)
