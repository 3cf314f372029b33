"""The speech request (`orpheus`), its Triton inputs, and streaming a whole text sentence by sentence.

`stream_speech` splits the text into sentences (client.sentences) and sends each as its own
`orpheus` request, because the LM speaks best one sentence at a time. The next sentence's
stream is opened as soon as the current one has produced its first chunk, so by the time the
current sentence ends the next one's audio is already there: the concatenation has no gap,
and a sentence sounds the same spoken alone as inside a longer text (same voice, same
sampling options, same seed). At most `ahead` streams run beyond the one being played.
Closing the iterator or cancelling its task cancels every open stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient

from tritone.ensemble import tensors as T

from .request import optional_scalars, sampling_inputs, tensor_input, text_input
from .response import AudioChunk
from .sentences import MAX_SENTENCE_CHARS, split_sentences
from .stats import StreamStats
from .stream import stream_chunks

SAMPLE_RATE = 24_000  # SNAC 24 kHz: the rate of the streamed audio and of REFERENCE_AUDIO


@dataclass(frozen=True)
class SpeechRequest:
    """Text to speak and how; None means "server default".

    The voice is one of: `voice`, a speaker the checkpoint was fine-tuned on ("tara"); or a clip
    to clone, `reference_text` (its transcript) with `reference_codes` [7, frames] (already
    encoded) or `reference_audio` [samples] (mono float32 at 24 kHz, encoded by the server);
    or nothing (the checkpoint's default voice). Chatterbox (model "chatterbox") clones from
    `reference_audio` alone (no transcript) and takes `exaggeration`, `cfg_weight` and `min_p`.
    """

    text: str
    voice: str | None = None
    reference_text: str | None = None
    reference_codes: np.ndarray | None = field(default=None, compare=False)
    reference_audio: np.ndarray | None = field(default=None, compare=False)
    max_duration: float | None = None  # seconds; per sentence when the text is split
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    return_codes: bool = False
    exaggeration: float | None = None  # chatterbox: emotion exaggeration
    cfg_weight: float | None = None  # chatterbox: classifier-free guidance weight
    min_p: float | None = None  # chatterbox: min-p sampling


def speech_inputs(request: SpeechRequest) -> list[InferInput]:
    """InferInputs for `request`: TEXT always, the others only when set (the model has no batch dimension)."""
    inputs = [text_input(T.TEXT, request.text)]
    for name, text in ((T.VOICE, request.voice), (T.REFERENCE_TEXT, request.reference_text)):
        if text is not None:
            inputs.append(text_input(name, text))
    if request.reference_codes is not None:
        inputs.append(tensor_input(T.REFERENCE_CODES, "INT64", np.ascontiguousarray(request.reference_codes, np.int64)))
    if request.reference_audio is not None:
        inputs.append(tensor_input(T.REFERENCE_AUDIO, "FP32",
                                   np.ascontiguousarray(np.reshape(request.reference_audio, -1), np.float32)))
    inputs += optional_scalars([(T.MAX_DURATION, "FP32", np.float32, request.max_duration),
                                (T.EXAGGERATION, "FP32", np.float32, request.exaggeration),
                                (T.CFG_WEIGHT, "FP32", np.float32, request.cfg_weight)])
    return inputs + sampling_inputs(request, (T.REPETITION_PENALTY, "FP32", np.float32, request.repetition_penalty),
                                    (T.MIN_P, "FP32", np.float32, request.min_p))


def sentence_requests(request: SpeechRequest, max_chars: int | None = MAX_SENTENCE_CHARS) -> list[SpeechRequest]:
    """One request per piece of the text; the request itself when it is not split (or blank: the server refuses it)."""
    pieces = split_sentences(request.text, max_chars) if max_chars else []
    return [dataclasses.replace(request, text=piece) for piece in pieces] or [request]


def stream_speech(
    url: str | InferenceServerClient,
    request: SpeechRequest,
    *,
    model: str = T.ORPHEUS,
    max_chars: int | None = MAX_SENTENCE_CHARS,
    ahead: int = 1,
    request_id: str | None = None,
    timeout: float | None = None,
    stats: StreamStats | None = None,
    target: str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[AudioChunk]:
    """Speak `request.text` and yield audio chunks in order: indices 0, 1, 2, ... across sentences, the
    last one final. `max_chars` None sends the text as one request. `timeout` is per sentence.

    Errors as `client.stream.stream_chunks`; a sentence's error is raised when its turn comes.
    """
    requests = sentence_requests(request, max_chars)
    if len(requests) == 1:
        return stream_chunks(url, model, speech_inputs(requests[0]), expect_codes=request.return_codes,
                             request_id=request_id, timeout=timeout, stats=stats, target=target, headers=headers)
    return _stream_sentences(url, requests, model=model, ahead=max(1, ahead),
                             request_id=request_id or uuid.uuid4().hex, timeout=timeout, stats=stats, target=target,
                             headers=headers)


_END = object()


async def _pump(chunks: AsyncIterator[AudioChunk], queue: asyncio.Queue) -> None:
    """Move one sentence's chunks into its queue, then _END or the error (cancellation closes the stream)."""
    try:
        async for chunk in chunks:
            queue.put_nowait(chunk)
        queue.put_nowait(_END)
    except Exception as error:  # noqa: BLE001 - handed to the consumer, raised in order
        queue.put_nowait(error)


async def _stream_sentences(url, requests: list[SpeechRequest], *, model: str, ahead: int, request_id: str,
                            timeout: float | None, stats: StreamStats | None,
                            target: str | None, headers: dict[str, str] | None = None) -> AsyncIterator[AudioChunk]:
    owns_client = isinstance(url, str)
    client = InferenceServerClient(url) if owns_client else url
    target = url if owns_client else target
    opened: list[tuple[asyncio.Task, asyncio.Queue]] = []

    def open_until(count: int) -> None:
        while len(opened) < min(count, len(requests)):
            i = len(opened)
            chunks = stream_chunks(client, model, speech_inputs(requests[i]), expect_codes=requests[i].return_codes,
                                   request_id=f"{request_id}-{i}", timeout=timeout, target=target, headers=headers)
            queue: asyncio.Queue = asyncio.Queue()
            opened.append((asyncio.create_task(_pump(chunks, queue)), queue))

    index, delivered_final = 0, False
    tokens_in = tokens_out = 0  # every sentence's usage, summed onto the last chunk
    try:
        if stats is not None:
            stats.start()
        for i in range(len(requests)):
            open_until(i + 1)
            queue, last_sentence, started = opened[i][1], i == len(requests) - 1, False
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                if not started:  # this sentence is generating: start the next one(s) now
                    started = True
                    open_until(i + 1 + ahead)
                final = last_sentence and item.final
                if item.usage is not None:
                    tokens_in, tokens_out = tokens_in + item.usage[0], tokens_out + item.usage[1]
                if len(item.audio) == 0 and not final:  # a sentence that produced no frames
                    continue
                if stats is not None:
                    stats.record(len(item.audio), item.sample_rate)
                delivered_final = final
                usage = (tokens_in, tokens_out) if final and item.usage is not None else None
                yield AudioChunk(index, item.sample_rate, item.audio, item.codes, final, usage, i, requests[i].text)
                index += 1
        if stats is not None:
            stats.finish()
    finally:
        if not delivered_final:  # stopped early: cancel every stream still running
            for task, _ in opened:  # first cancel all, synchronously: a second cancellation cannot stop this
                task.cancel()
        # after the final chunk every sentence's stream has its final response: let each end its RPC, uncancelled
        # (client/stream.py: a finished stream cancelled leaks in Triton 2.51)
        await asyncio.gather(*(task for task, _ in opened), return_exceptions=True)
        if owns_client:
            await client.close()
