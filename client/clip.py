"""Decoding a reference clip (any format FFmpeg reads) to what the speech codec takes: mono float32 at 24 kHz.

Shared by the CLI (`--reference clip.wav`, sent as REFERENCE_AUDIO) and the gateway's voice
upload, so a clip cloned either way is the same samples. Channels are averaged (not FFmpeg's
down-mix matrix, which changes the level with the layout); FFmpeg's resampler changes the rate.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import av
import numpy as np


def decode_clip(source: str | os.PathLike | BinaryIO, sample_rate: int) -> np.ndarray:
    """The first audio stream of `source` (path or binary file object) as mono float32 [samples] in [-1, 1].

    Raises ValueError when it has no audio stream or cannot be decoded.
    """
    try:
        with av.open(source if not isinstance(source, os.PathLike) else os.fspath(source)) as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=sample_rate)
            pieces = []
            for frame in container.decode(stream):
                pieces += [f.to_ndarray() for f in resampler.resample(frame)]
            pieces += [f.to_ndarray() for f in resampler.resample(None)]
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot decode the clip: {error}") from None
    if not pieces:
        return np.zeros(0, np.float32)
    audio = np.concatenate(pieces, axis=1).mean(axis=0)  # [channels, samples] -> mono
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
