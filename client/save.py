"""Generate music straight into files: WAV audio and, optionally, the codes as .npy."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import numpy as np

from .request import MusicRequest
from .response import AudioChunk
from .stats import StreamStats
from .stream import stream_music
from .wav import WavWriter


async def save_music(
    url: str,
    request: MusicRequest,
    wav_path: str | os.PathLike,
    *,
    codes_path: str | os.PathLike | None = None,
    on_chunk: Callable[[AudioChunk, StreamStats], None] | None = None,
    **stream_options,
) -> StreamStats:
    """Stream `request` into `wav_path`; with `codes_path`, save codes [codebooks, frames].

    `on_chunk` is called after each chunk is written; `stream_options` go to stream_music.
    """
    if codes_path is not None and not request.return_codes:
        raise ValueError("codes_path needs request.return_codes=True")
    stats = StreamStats()
    codes = []
    with WavWriter(wav_path) as wav:
        async for chunk in stream_music(url, request, stats=stats, **stream_options):
            wav.write(chunk.audio, chunk.sample_rate)
            if chunk.codes is not None:
                codes.append(chunk.codes)
            if on_chunk is not None:
                on_chunk(chunk, stats)
    if codes_path is not None:
        np.save(codes_path, np.concatenate(codes, axis=1))
    return stats


def save_music_sync(*args, **kwargs) -> StreamStats:
    """Blocking `save_music` for scripts and the CLI."""
    return asyncio.run(save_music(*args, **kwargs))
