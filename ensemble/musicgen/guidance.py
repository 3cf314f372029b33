"""Classifier-free guidance: a guided request runs two rows, conditional and unconditional, and
samples from their logits pushed apart by `guidance_scale`."""

from __future__ import annotations

import numpy as np


def apply_guidance(logits: np.ndarray, scale: float) -> np.ndarray:
    """logits: [rows, K, V] with rows = (conditional, unconditional) or (conditional,) -> [K, V]."""
    if logits.shape[0] == 1:
        return logits[0]
    cond, uncond = logits[0], logits[1]
    return uncond + (cond - uncond) * scale
