"""ONNX Runtime sessions for the exported graphs (the CPU target)."""

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


class OnnxLanguageModel:
    """lm_cross_kv.onnx + lm_step.onnx behind the scheduler's LanguageModel protocol."""

    def __init__(self, cross_kv_path: Path, step_path: Path, threads: int | None = None):
        self._cross = open_session(cross_kv_path, threads)
        self._step = open_session(step_path, threads)

    @staticmethod
    def zeros(shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)

    def cross_kv(self, hidden: np.ndarray):
        keys, values = self._cross.run([T.CROSS_KEYS, T.CROSS_VALUES], {T.ENCODER_HIDDEN_STATES: hidden})
        return keys, values

    def step(self, code_ids, positions, past_keys, past_values, cross_keys, cross_values, encoder_mask):
        return self._step.run(
            [T.LOGITS, T.NEW_KEYS, T.NEW_VALUES],
            {
                T.CODE_IDS: code_ids,
                T.POSITIONS: positions,
                T.PAST_KEYS: past_keys,
                T.PAST_VALUES: past_values,
                T.CROSS_KEYS: cross_keys,
                T.CROSS_VALUES: cross_values,
                T.ENCODER_MASK: encoder_mask,
            },
        )


class OnnxTextEncoder:
    def __init__(self, path: Path, threads: int | None = None):
        self._session = open_session(path, threads)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        # [B, E], [B, E] -> [B, E, D]
        return self._session.run([T.ENCODER_HIDDEN_STATES], {T.INPUT_IDS: input_ids, T.ATTENTION_MASK: attention_mask})[0]


class OnnxCodecDecoder:
    def __init__(self, path: Path, threads: int | None = None):
        self._session = open_session(path, threads)

    def __call__(self, audio_codes: np.ndarray) -> np.ndarray:
        # [B, K, T] -> [B, T * hop]
        return self._session.run([T.AUDIO], {T.AUDIO_CODES: audio_codes})[0]

    def each(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """The engine's decode_codes: [codes [K, T], ...] -> [audio [T * hop], ...], one call each."""
        return [self(codes[None])[0] for codes in windows]


class OnnxSpeechLanguageModel:
    """speech_lm_step.onnx behind the speech family's SpeechLanguageModel protocol."""

    def __init__(self, step_path: Path, threads: int | None = None):
        self._step = open_session(step_path, threads)

    @staticmethod
    def zeros(shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)

    def step(self, input_ids, positions, logit_index, past_keys, past_values):
        return self._step.run(
            [T.LOGITS, T.NEW_KEYS, T.NEW_VALUES],
            {T.INPUT_IDS: input_ids, T.POSITIONS: positions, T.LOGIT_INDEX: logit_index,
             T.PAST_KEYS: past_keys, T.PAST_VALUES: past_values},
        )


class OnnxAudioEncoder:
    def __init__(self, path: Path, threads: int | None = None):
        self._session = open_session(path, threads)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        # [B, S] -> [B, 7, frames]
        return self._session.run([T.AUDIO_CODES], {T.AUDIO: audio})[0]
