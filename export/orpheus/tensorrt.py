"""What orpheus' TensorRT plans (SNAC) need beyond its spec (export/tensorrt.py builds and checks them)."""

from __future__ import annotations

import re

import numpy as np

from tritone.ensemble.orpheus import spec
from tritone.ensemble.triton.spec import ModelSpec

# Layers kept in FP32 under FP16/BF16, by ONNX node name. Codes are an argmin over codebook
# distances: reduced precision would change which code wins, and the encoder runs once per voice,
# so all of it stays FP32.
FP32_LAYERS = {
    spec.CODEC_ENCODER.name: re.compile(r"."),
}


def sample_inputs(model: ModelSpec, codebook_size: int) -> dict[str, np.ndarray]:
    """Inputs a plan is checked on against ONNX Runtime: two rows."""
    rng = np.random.default_rng(0)
    if model.name == spec.CODEC_ENCODER.name:
        return {"audio": rng.uniform(-0.5, 0.5, (2, 3 * 24000)).astype(np.float32)}
    if model.name == spec.CODEC_DECODER.name:
        return {"audio_codes": rng.integers(0, codebook_size, (2, 7, 12))}
    raise ValueError(f"{model.name} has no TensorRT plan")
