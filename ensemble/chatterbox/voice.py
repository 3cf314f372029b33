"""A Chatterbox voice: what a reference clip becomes once, and every request in that voice reuses.

T3 reads the speaker embedding (the voice encoder's, 256) and a speech-token prompt (the clip's first
6 s as S3 tokens, at most 150); the flow reads the clip's tokens, its mel spectrogram (2 frames per
token) and its x-vector (192): it continues the clip's mel, so the new speech sounds like it.
`chatterbox_voice` (a Triton model) computes them from a clip; a checkpoint's built-in voice is
stored as the same arrays (`voices/<name>.npz`).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T

# the voice model's outputs, and a stored voice's arrays
FIELDS = (T.SPEAKER_EMB, T.PROMPT_SPEECH_TOKENS, T.PROMPT_TOKENS, T.PROMPT_MEL, T.XVECTOR)
CLIP_RATE, T3_RATE = 24000, 16000


def clip_16k(clip: np.ndarray) -> np.ndarray:
    """T3's 16 kHz version of a 24 kHz clip, made as the reference makes it (librosa.resample's default: soxr at
    quality HQ, a filter the voice graph cannot reproduce, so the graph takes it as its second input)."""
    import soxr

    return soxr.resample(np.asarray(clip, np.float32), CLIP_RATE, T3_RATE, quality="HQ").astype(np.float32)


def voice_graph_inputs(clip: np.ndarray) -> dict[str, np.ndarray]:
    """chatterbox_voice's graph inputs for one clip [S] at 24 kHz: it and its 16 kHz version, each [1, samples]."""
    clip = np.asarray(clip, np.float32)
    return {T.AUDIO: clip[None], T.AUDIO_16K: clip_16k(clip)[None]}


@dataclass(frozen=True, eq=False)
class Voice:
    speaker_emb: np.ndarray  # float32 [256]: T3's speaker token
    prompt_speech_tokens: np.ndarray  # int64 [<= 150]: T3's speech prompt
    prompt_tokens: np.ndarray  # int64 [Tp]: the flow's prompt tokens
    prompt_mel: np.ndarray  # float32 [2 * Tp, 80]: the flow's prompt mel
    xvector: np.ndarray  # float32 [192]: the flow's speaker embedding

    def __post_init__(self):
        if self.prompt_mel.shape[0] != 2 * self.prompt_tokens.shape[0]:
            raise ValueError(f"a voice's prompt mel has {self.prompt_mel.shape[0]} frames for "
                             f"{self.prompt_tokens.shape[0]} prompt tokens (2 per token expected)")

    @classmethod
    def from_arrays(cls, arrays) -> "Voice":
        types = (np.float32, np.int64, np.int64, np.float32, np.float32)
        return cls(*(np.ascontiguousarray(np.asarray(arrays[name]), dtype) for name, dtype in zip(FIELDS, types)))

    @cached_property
    def digest(self) -> bytes:
        """What identifies the voice: a digest of its arrays."""
        return hashlib.sha256(self.to_bytes()).digest()

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{name: getattr(self, name) for name in FIELDS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Voice":
        with np.load(io.BytesIO(data)) as arrays:
            return cls.from_arrays(arrays)

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> "Voice":
        return cls.from_bytes(Path(path).read_bytes())
