"""MusicGen's classifier-free guidance: conditional and unconditional rows pushed apart by the scale."""

import numpy as np

from tritone.ensemble.musicgen.guidance import apply_guidance


def random_logits(seed=0, codebooks=4, vocab=64):
    return np.random.default_rng(seed).normal(size=(codebooks, vocab)).astype(np.float32)


def test_guidance_is_uncond_plus_scale_times_the_difference():
    cond = np.array([[[1.0, 2.0, -1.0]]])
    uncond = np.array([[[0.5, 3.0, 1.0]]])
    guided = apply_guidance(np.concatenate([cond, uncond]), 3.0)
    np.testing.assert_allclose(guided, [[0.5 + 3 * 0.5, 3.0 + 3 * -1.0, 1.0 + 3 * -2.0]])


def test_guidance_with_one_row_returns_the_conditional_logits_unchanged():
    logits = random_logits()[None]
    np.testing.assert_array_equal(apply_guidance(logits, 3.0), logits[0])
