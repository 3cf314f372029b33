"""Turning logits into tokens: classifier-free guidance, temperature, top-k, top-p."""

from __future__ import annotations

import numpy as np


def apply_guidance(logits: np.ndarray, scale: float) -> np.ndarray:
    """logits: [rows, K, V] with rows = (conditional, unconditional) or (conditional,) -> [K, V]."""
    if logits.shape[0] == 1:
        return logits[0]
    cond, uncond = logits[0], logits[1]
    return uncond + (cond - uncond) * scale


def sample(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> np.ndarray:
    """logits: [K, V] -> tokens [K]. Greedy when top_k == 1 or temperature == 0."""
    if top_k == 1 or temperature == 0.0:
        return np.argmax(logits, axis=-1)
    scores = logits.astype(np.float64) / temperature
    vocab = scores.shape[-1]
    if 0 < top_k < vocab:
        kth = np.partition(scores, vocab - top_k, axis=-1)[:, vocab - top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-probs, axis=-1)
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least the best token)
        keep_sorted = np.cumsum(sorted_probs, axis=-1) - sorted_probs < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    cumulative = np.cumsum(probs, axis=-1)
    draws = rng.random((probs.shape[0], 1))
    return np.minimum((cumulative < draws).sum(axis=-1), vocab - 1)
