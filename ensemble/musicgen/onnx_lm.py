"""MusicGen's LM on ONNX Runtime, the CPU target (lm_cross_kv.onnx + lm_step.onnx), and the T5 text encoder
for local pipelines. ensemble/musicgen/torch_lm.py is the GPU target's LM."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.onnx_runtime import open_session


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
