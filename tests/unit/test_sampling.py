"""Logits to tokens, the engine's shared rules: repetition penalty, greedy, top-k, top-p and seeded
reproducibility (MusicGen's guidance is tested beside its family, tests/unit/test_guidance.py)."""

import numpy as np
import pytest

from tritone.ensemble.engine.sampling import repetition_penalty, sample


def random_logits(seed=0, codebooks=4, vocab=64):
    return np.random.default_rng(seed).normal(size=(codebooks, vocab)).astype(np.float32)


@pytest.mark.parametrize("temperature, top_k", [(1.0, 1), (0.0, 0), (0.0, 50), (2.0, 1)])
def test_greedy_settings_return_the_argmax(temperature, top_k):
    logits = random_logits(1)
    rng = np.random.default_rng(0)
    tokens = sample(logits, temperature, top_k, 1.0, rng)
    np.testing.assert_array_equal(tokens, logits.argmax(axis=-1))


def test_top_k_never_picks_outside_the_k_best():
    logits = random_logits(2, codebooks=4, vocab=64)
    k = 5
    best = np.argsort(-logits, axis=-1)[:, :k]
    rng = np.random.default_rng(3)
    seen = [set() for _ in range(4)]
    for _ in range(2000):
        tokens = sample(logits, 5.0, k, 1.0, rng)  # high temperature flattens: every top-k token is likely
        for cb, token in enumerate(tokens):
            assert token in best[cb]
            seen[cb].add(int(token))
    assert all(len(s) == k for s in seen)  # and it does use all k


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass():
    # probs 0.5, 0.3, 0.15, 0.05: top_p 0.7 needs the first two (0.5 < 0.7 <= 0.8)
    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    logits = np.log(probs)
    rng = np.random.default_rng(0)
    drawn = {int(sample(logits, 1.0, 0, 0.7, rng)[0]) for _ in range(2000)}
    assert drawn == {0, 1}


def test_top_p_smaller_than_the_best_token_keeps_only_the_best():
    logits = np.log(np.array([[0.1, 0.6, 0.3]]))
    rng = np.random.default_rng(0)
    assert {int(sample(logits, 1.0, 0, 0.2, rng)[0]) for _ in range(500)} == {1}


def test_min_p_drops_tokens_below_its_share_of_the_best():
    # probs 0.5, 0.3, 0.15, 0.05; min_p 0.2 keeps p >= 0.1: the first three (transformers' MinPLogitsWarper rule)
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    drawn = [int(sample(logits, 1.0, 0, 1.0, rng, min_p=0.2)[0]) for _ in range(4000)]
    assert set(drawn) == {0, 1, 2}
    # the survivors keep their relative odds: 0.5 / 0.95 of the draws for the best
    assert abs(drawn.count(0) / len(drawn) - 0.5 / 0.95) < 0.03


def test_min_p_applies_after_temperature():
    # temperature 0.5 squares the odds: 0.5, 0.3, 0.15, 0.05 -> 0.25 : 0.09 : 0.0225 : 0.0025 (relative);
    # min_p 0.2 keeps p >= 0.05 (relative): the first two only
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    assert {int(sample(logits, 0.5, 0, 1.0, rng, min_p=0.2)[0]) for _ in range(2000)} == {0, 1}


def test_sampled_tokens_are_in_the_vocabulary():
    logits = random_logits(4)
    rng = np.random.default_rng(5)
    for _ in range(200):
        tokens = sample(logits, 1.0, 0, 1.0, rng)
        assert tokens.shape == (4,)
        assert ((tokens >= 0) & (tokens < 64)).all()


def draws(seed, n=50):
    logits = random_logits(6)
    rng = np.random.default_rng(seed)
    return np.stack([sample(logits, 1.0, 50, 0.95, rng) for _ in range(n)])


def test_the_same_seed_gives_the_same_tokens():
    np.testing.assert_array_equal(draws(123), draws(123))


def test_a_different_seed_gives_different_tokens():
    assert not np.array_equal(draws(123), draws(124))


def test_the_repetition_penalty_makes_seen_tokens_less_likely_whatever_their_sign():
    scores = np.array([3.0, -2.0, 1.5, -0.5])
    seen = np.array([True, True, False, False])
    np.testing.assert_array_equal(repetition_penalty(scores, seen, 2.0), [1.5, -4.0, 1.5, -0.5])
    assert repetition_penalty(scores, seen, 1.0) is scores  # 1 disables it
