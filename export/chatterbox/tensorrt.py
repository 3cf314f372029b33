"""What chatterbox's TensorRT plans need beyond its spec (export/tensorrt.py builds and checks them)."""

from __future__ import annotations

import re

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox import spec
from tritone.ensemble.triton.spec import ModelSpec

# Layers kept in FP32 under FP16/BF16, by ONNX node name. The vocoder's source integrates f0 into a phase over
# whole windows, where FP16 loses cycles: its sine source stays FP32. (chatterbox_voice is no plan: python on ONNX
# Runtime, once per clip.)
FP32_LAYERS = {
    spec.VOCODER.name: re.compile(r"source|cumsum|phase", re.IGNORECASE),
}


def sample_inputs(model: ModelSpec, codebook_size: int) -> dict[str, np.ndarray]:
    """Inputs a plan is checked on against ONNX Runtime: two rows, the second shorter (padded)."""
    rng = np.random.default_rng(0)
    mel = spec.MEL_BINS
    if model.name == spec.FLOW.name:
        tokens, prompt = 30, 150
        return {T.SPEECH_TOKENS: rng.integers(0, codebook_size, (2, tokens)),
                T.SPEECH_TOKEN_LENGTHS: np.array([tokens, tokens - 7]),
                T.PROMPT_TOKENS: rng.integers(0, codebook_size, (2, prompt)),
                T.PROMPT_TOKEN_LENGTHS: np.array([prompt, prompt - 20]),
                T.PROMPT_MEL: rng.normal(size=(2, 2 * prompt, mel)).astype(np.float32),
                T.XVECTOR: rng.normal(size=(2, 192)).astype(np.float32),
                T.PROMPT_NOISE: rng.normal(size=(2, mel, 2 * prompt)).astype(np.float32),
                T.FLOW_NOISE: rng.normal(size=(2, mel, 2 * tokens)).astype(np.float32)}
    if model.name == spec.VOCODER.name:
        frames = 60
        return {T.MEL: rng.normal(size=(2, mel, frames)).astype(np.float32),
                T.MEL_LENGTHS: np.array([frames, frames - 14]),
                T.SOURCE_PHASE: rng.uniform(-0.5, 0.5, (2, spec.HARMONICS)).astype(np.float32),
                T.SOURCE_NOISE: rng.normal(size=(2, frames * spec.MEL_SAMPLES)).astype(np.float32)}
    raise ValueError(f"{model.name} has no TensorRT plan")
