"""Orpheus' LM on ONNX Runtime (the CPU target): lm_step.onnx.
(ensemble/orpheus/torch_lm.py is the GPU target's.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.onnx_runtime import open_session
from tritone.ensemble.engine.prefix_cache import files_digest


class OnnxSpeechLanguageModel:
    """lm_step.onnx behind the speech family's OrpheusLanguageModel protocol."""

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

    def step(self, input_ids, positions, logit_index, past_keys, past_values):
        return self._step.run(
            [T.LOGITS, T.NEW_KEYS, T.NEW_VALUES],
            {T.INPUT_IDS: input_ids, T.POSITIONS: positions, T.LOGIT_INDEX: logit_index,
             T.PAST_KEYS: past_keys, T.PAST_VALUES: past_values},
        )
