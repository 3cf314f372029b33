"""ONNX Runtime sessions for the exported graphs (the CPU target): the session options, and the codec
wrappers every family uses, and the decoder-only LM step graph two families' LMs are (`OnnxLmStep`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.prefix_cache import files_digest


def open_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or int(os.environ.get("TRITONE_ORT_THREADS", "0"))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxLmStep:
    """A decoder-only LM step graph (chunked prefill and decode, rows at their own positions) on ONNX Runtime:
    `step(first, positions, logit_index, past_keys, past_values)` -> logits [R, V], new keys and values
    [L, R, H, W, Dh]. A family names its graph's first input (`FIRST_INPUT`: token ids, or embeddings)."""

    FIRST_INPUT = T.INPUT_IDS

    def __init__(self, step_path: Path, threads: int | None = None):
        self._path = Path(step_path)
        self._step = open_session(step_path, threads)

    def identity(self) -> str:
        """What its keys/values depend on (the prefix cache's key): the graph and its weights' files."""
        weights = self._path.with_name(self._path.name + ".data")
        return "onnxruntime/" + files_digest([self._path, *([weights] if weights.exists() else [])])

    @staticmethod
    def zeros(shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)

    def step(self, first, positions, logit_index, past_keys, past_values):
        return self._step.run(
            [T.LOGITS, T.NEW_KEYS, T.NEW_VALUES],
            {self.FIRST_INPUT: first, T.POSITIONS: positions, T.LOGIT_INDEX: logit_index,
             T.PAST_KEYS: past_keys, T.PAST_VALUES: past_values},
        )


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
