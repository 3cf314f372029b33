"""Turning logits into tokens, for any family: repetition penalty, temperature, top-k, min-p, top-p, drawn
from the request's own seeded generator (so a seeded request samples the same whatever shares its
steps). Family-specific rules (MusicGen's guidance, Orpheus's grammar) stay in the family."""

from __future__ import annotations

import numpy as np


def repetition_penalty(scores: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """transformers' rule: a token already seen has its score divided by `penalty` (multiplied when
    negative), so it is less likely either way. scores and seen (bool) have the same shape."""
    if penalty == 1.0:
        return scores
    return np.where(seen, np.where(scores < 0, scores * penalty, scores / penalty), scores)


def sample(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator,
           min_p: float = 0.0) -> np.ndarray:
    """logits: [K, V] -> tokens [K]. Greedy when top_k == 1 or temperature == 0. `min_p` > 0 drops the
    tokens less likely than min_p times the likeliest one (after temperature, before top-p)."""
    if top_k == 1 or temperature == 0.0:
        return np.argmax(logits, axis=-1)
    scores = logits.astype(np.float64) / temperature
    vocab = scores.shape[-1]
    if 0 < top_k < vocab:
        kth = np.partition(scores, vocab - top_k, axis=-1)[:, vocab - top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if min_p > 0.0:
        probs = np.where(probs < min_p * probs.max(axis=-1, keepdims=True), 0.0, probs)
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
