"""Orpheus' LM on ONNX Runtime (the CPU target): lm_step.onnx over token ids.
(ensemble/orpheus/torch_lm.py is the GPU target's.)"""

from __future__ import annotations

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.onnx_runtime import OnnxLmStep


class OnnxSpeechLanguageModel(OnnxLmStep):
    """lm_step.onnx behind the speech family's OrpheusLanguageModel protocol: input_ids [R, W]."""

    FIRST_INPUT = T.INPUT_IDS
