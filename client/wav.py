"""Writing streamed audio to a WAV file as it arrives."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf


class WavWriter:
    """Mono WAV writer: opened on the first chunk, appended per chunk, header fixed on close.

    `subtype` "FLOAT" (32-bit float, format 3) keeps the model's output exactly;
    "PCM_16" gives 16-bit integer PCM.
    """

    def __init__(self, path: str | os.PathLike, subtype: str = "FLOAT"):
        self.path = path
        self.subtype = subtype
        self.sample_rate: int | None = None
        self.frames = 0
        self._file: sf.SoundFile | None = None

    def write(self, audio: np.ndarray, sample_rate: int) -> None:
        if self._file is None:
            self._file = sf.SoundFile(
                self.path, "w", samplerate=sample_rate, channels=1, format="WAV", subtype=self.subtype
            )
            self.sample_rate = sample_rate
        elif sample_rate != self.sample_rate:
            raise ValueError(f"sample rate changed from {self.sample_rate} to {sample_rate}")
        self._file.write(np.asarray(audio, dtype=np.float32))
        self.frames += len(audio)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
