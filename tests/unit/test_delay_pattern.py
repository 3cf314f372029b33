"""The codebook delay pattern: step counts, which codebooks are real at each step, and when
frames become complete; the layout must match transformers' build_delay_pattern_mask."""

import numpy as np
import pytest

from tritone.ensemble.musicgen.delay_pattern import frames_complete, frames_for, num_steps, valid_codebooks


def transformers_pad_layout(frames: int, codebooks: int) -> np.ndarray:
    """Bool [K, steps]: True where transformers forces the pad token at each decode step."""
    import torch
    from transformers import MusicgenDecoderConfig, MusicgenForCausalLM

    pad = 64
    config = MusicgenDecoderConfig(
        vocab_size=pad, hidden_size=8, ffn_dim=16, num_hidden_layers=1, num_attention_heads=1,
        num_codebooks=codebooks, pad_token_id=pad, bos_token_id=pad, max_position_embeddings=64,
    )
    lm = MusicgenForCausalLM(config)
    bos = torch.full((codebooks, 1), pad, dtype=torch.long)
    # column 0 is the bos fed at step 0; column c holds what decode step c - 1 produces
    _, mask = lm.build_delay_pattern_mask(bos, pad_token_id=pad, max_length=frames + codebooks)
    return (mask[:, 1:] == pad).numpy()


# transformers applies no pattern at all when frames + K < 2K - 1 (a shortcut of its own), so
# the comparison starts at frames = K - 1
@pytest.mark.parametrize("frames, codebooks", [(3, 4), (4, 4), (10, 4), (7, 2), (5, 1), (7, 8)])
def test_valid_codebooks_over_a_full_run_match_transformers_pad_positions(frames, codebooks):
    steps = num_steps(frames, codebooks)
    ours = np.stack([~valid_codebooks(step, frames, codebooks) for step in range(steps)], axis=1)
    expected = transformers_pad_layout(frames, codebooks)
    assert ours.shape == expected.shape == (codebooks, frames + codebooks - 1)
    np.testing.assert_array_equal(ours, expected)


def test_num_steps_adds_one_step_per_delayed_codebook():
    assert num_steps(1, 1) == 1
    assert num_steps(1, 4) == 4
    assert num_steps(500, 4) == 503


def test_every_codebook_produces_exactly_frames_real_tokens_in_step_order():
    frames, codebooks = 6, 4
    steps = num_steps(frames, codebooks)
    valid = np.stack([valid_codebooks(s, frames, codebooks) for s in range(steps)], axis=1)
    assert valid.sum(axis=1).tolist() == [frames] * codebooks
    for k in range(codebooks):
        assert np.flatnonzero(valid[k]).tolist() == list(range(k, k + frames))


def test_frames_for_rounds_duration_to_frames_and_never_returns_zero():
    assert frames_for(1.0, 50) == 50
    assert frames_for(0.21, 50) == 10  # 10.5 rounds to even
    assert frames_for(0.001, 50) == 1


def test_no_frame_is_complete_until_the_last_codebook_has_produced_it():
    frames, codebooks = 5, 4
    assert [frames_complete(s, frames, codebooks) for s in range(0, 4)] == [0, 0, 0, 0]
    assert frames_complete(4, frames, codebooks) == 1  # step 3 produced codebook 3's frame 0


def test_frames_complete_grows_one_per_step_and_stops_at_frames():
    frames, codebooks = 5, 4
    done = [frames_complete(s, frames, codebooks) for s in range(num_steps(frames, codebooks) + 3)]
    assert done == [0, 0, 0, 0, 1, 2, 3, 4, 5, 5, 5]
    assert frames_complete(num_steps(frames, codebooks), frames, codebooks) == frames


def test_with_one_codebook_each_step_completes_a_frame():
    assert [frames_complete(s, 3, 1) for s in range(5)] == [0, 1, 2, 3, 3]
