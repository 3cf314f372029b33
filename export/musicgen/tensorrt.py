"""What musicgen's TensorRT plans need beyond its spec (export/tensorrt.py builds and checks them)."""

from __future__ import annotations

import re

import numpy as np

from tritone.ensemble.musicgen import spec
from tritone.ensemble.triton.spec import ModelSpec

# Layers kept in FP32 under FP16/BF16, by ONNX node name (torch export names nodes after modules):
# T5's layer norms and feed-forward output are known to exceed 65504 in FP16.
FP32_LAYERS = {
    spec.TEXT_ENCODER.name: re.compile(r"layer_norm|DenseReluDense/wo"),
    spec.CODEC_DECODER.name: re.compile(r"lstm", re.IGNORECASE),
}


def sample_inputs(model: ModelSpec, codebook_size: int) -> dict[str, np.ndarray]:
    """Inputs a plan is checked on against ONNX Runtime: two rows, one padded."""
    rng = np.random.default_rng(0)
    if model.name == spec.TEXT_ENCODER.name:
        mask = np.ones((2, 16), np.int64)
        mask[1, 9:] = 0
        return {"input_ids": rng.integers(3, 100, (2, 16)), "attention_mask": mask}
    if model.name == spec.CODEC_DECODER.name:
        return {"audio_codes": rng.integers(0, codebook_size, (2, spec.CODEBOOKS, 45))}
    raise ValueError(f"{model.name} has no TensorRT plan")
