"""Parsing musicgen responses and checking the streaming contract (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tritonclient.grpc import InferResult

from tritone.ensemble import tensors as T

from .errors import StreamContractError

FINAL_PARAMETER = "triton_final_response"


@dataclass
class AudioChunk:
    """One streamed piece of audio; `codes` is [codebooks, frames] when requested."""

    index: int
    sample_rate: int
    audio: np.ndarray
    codes: np.ndarray | None
    final: bool
    usage: tuple[int, int] | None = None  # on the final chunk: (LM input tokens, LM tokens sampled)
    sentence: int = 0  # speech split into sentences: which one this chunk speaks
    sentence_text: str | None = None  # and its text (None: the request's whole text)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def is_final(result: InferResult) -> bool:
    """Whether the response carries Triton's final-response flag."""
    parameters = result.get_response().parameters
    return FINAL_PARAMETER in parameters and parameters[FINAL_PARAMETER].bool_param


def _scalar(result: InferResult, name: str) -> int:
    value = result.as_numpy(name)
    if value is None or value.shape != (1,):
        raise StreamContractError(f"output {name!r} must have shape [1], got {_shape(value)}")
    return int(value[0])


def _shape(value: np.ndarray | None) -> str:
    return "nothing" if value is None else str(list(value.shape))


def parse_result(result: InferResult) -> AudioChunk | None:
    """The chunk in one response, or None for an empty final response."""
    final = is_final(result)
    if not result.get_response().outputs:
        if final:
            return None
        raise StreamContractError("empty response without the final flag")
    audio = result.as_numpy(T.AUDIO)
    if audio is None or audio.ndim != 1 or audio.dtype != np.float32:
        raise StreamContractError(f"output {T.AUDIO!r} must be FP32 [samples], got {_shape(audio)}")
    codes = result.as_numpy(T.CODES)
    if codes is not None and codes.ndim != 2:
        raise StreamContractError(f"output {T.CODES!r} must be [codebooks, frames], got {_shape(codes)}")
    sample_rate = _scalar(result, T.SAMPLE_RATE)
    if sample_rate <= 0:
        raise StreamContractError(f"sample rate must be positive, got {sample_rate}")
    usage = None
    if result.as_numpy(T.OUTPUT_TOKENS) is not None:
        usage = (_scalar(result, T.INPUT_TOKENS), _scalar(result, T.OUTPUT_TOKENS))
    return AudioChunk(_scalar(result, T.CHUNK_INDEX), sample_rate, audio, codes, final, usage)


class ChunkSequence:
    """Checks chunk indices 0, 1, 2, ... once each, one sample rate, exactly one final.

    Call `accept(chunk)` per response (None for an empty final response) and
    `finish()` when the stream ends.
    """

    def __init__(self, expect_codes: bool = False):
        self.expect_codes = expect_codes
        self.count = 0
        self.sample_rate: int | None = None
        self.done = False

    def accept(self, chunk: AudioChunk | None) -> None:
        if self.done:
            raise StreamContractError("response after the final response")
        if chunk is None:
            self.done = True
            return
        if chunk.index != self.count:
            raise StreamContractError(f"expected chunk {self.count}, got chunk {chunk.index}")
        if self.sample_rate is not None and chunk.sample_rate != self.sample_rate:
            raise StreamContractError(f"sample rate changed from {self.sample_rate} to {chunk.sample_rate}")
        if self.expect_codes and chunk.codes is None:
            raise StreamContractError(f"chunk {chunk.index} has no {T.CODES!r} although return_codes was set")
        self.sample_rate = chunk.sample_rate
        self.count += 1
        self.done = chunk.final

    def finish(self) -> None:
        if not self.done:
            raise StreamContractError(f"stream ended after {self.count} chunks without a final response")
        if self.count == 0:
            raise StreamContractError("stream ended without any audio")
