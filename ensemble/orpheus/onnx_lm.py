"""Orpheus' LM on ONNX Runtime (the CPU target): lm_step.onnx.
(ensemble/orpheus/torch_lm.py is the GPU target's.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.onnx_runtime import open_session


class OnnxSpeechLanguageModel:
    """lm_step.onnx behind the speech family's OrpheusLanguageModel protocol."""

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
