"""ONNX Runtime sessions for the exported graphs (the CPU target): the session options, and the codec
wrappers every family uses. A family's LM on ONNX Runtime lives in its own `runtime.py`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T


def open_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or int(os.environ.get("TRITONE_ORT_THREADS", "0"))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxCodecDecoder:
    def __init__(self, path: Path, threads: int | None = None):
        self._session = open_session(path, threads)

    def __call__(self, audio_codes: np.ndarray) -> np.ndarray:
        # [B, K, T] -> [B, T * hop]
        return self._session.run([T.AUDIO], {T.AUDIO_CODES: audio_codes})[0]

    def each(self, windows: list[tuple[np.ndarray]]) -> list[np.ndarray]:
        """The engine's decode_codes: [(codes [K, T],), ...] -> [audio [T * hop], ...], one call each."""
        return [self(codes[None])[0] for codes, in windows]


class OnnxAudioEncoder:
    def __init__(self, path: Path, threads: int | None = None):
        self._session = open_session(path, threads)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        # [B, S] -> [B, 7, frames]
        return self._session.run([T.AUDIO_CODES], {T.AUDIO: audio})[0]
