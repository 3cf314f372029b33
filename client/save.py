"""Generate straight into files: WAV audio as chunks arrive and, optionally, the codes as .npy."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import numpy as np

from .request import MusicRequest
from .response import AudioChunk
from .speech import SpeechRequest, stream_speech
from .stats import StreamStats
from .stream import stream_music
from .wav import WavWriter


async def save_stream(
    stream: Callable,
    url: str,
    request: MusicRequest | SpeechRequest,
    wav_path: str | os.PathLike,
    *,
    codes_path: str | os.PathLike | None = None,
    on_chunk: Callable[[AudioChunk, StreamStats], None] | None = None,
    **stream_options,
) -> StreamStats:
    """Stream `request` with `stream` (stream_music, stream_speech) into `wav_path`; with `codes_path`, save
    codes [codebooks, frames]. `on_chunk` is called after each chunk is written; `stream_options` go to `stream`.
    """
    if codes_path is not None and not request.return_codes:
        raise ValueError("codes_path needs request.return_codes=True")
    stats = StreamStats()
    codes = []
    with WavWriter(wav_path) as wav:
        async for chunk in stream(url, request, stats=stats, **stream_options):
            wav.write(chunk.audio, chunk.sample_rate)
            if chunk.codes is not None:
                codes.append(chunk.codes)
            if on_chunk is not None:
                on_chunk(chunk, stats)
    if codes_path is not None:
        np.save(codes_path, np.concatenate(codes, axis=1))
    return stats


async def save_music(url: str, request: MusicRequest, wav_path: str | os.PathLike, **options) -> StreamStats:
    """Generate `request` into `wav_path` (options: codes_path, on_chunk, and stream_music's; see save_stream)."""
    return await save_stream(stream_music, url, request, wav_path, **options)


async def save_speech(url: str, request: SpeechRequest, wav_path: str | os.PathLike, **options) -> StreamStats:
    """Speak `request` into `wav_path` sentence by sentence (options: codes_path, on_chunk, and stream_speech's)."""
    return await save_stream(stream_speech, url, request, wav_path, **options)


def save_music_sync(*args, **kwargs) -> StreamStats:
    """Blocking `save_music` for scripts and the CLI."""
    return asyncio.run(save_music(*args, **kwargs))


def save_speech_sync(*args, **kwargs) -> StreamStats:
    """Blocking `save_speech` for scripts and the CLI."""
    return asyncio.run(save_speech(*args, **kwargs))
