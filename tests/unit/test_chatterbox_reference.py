"""The reference Chatterbox (chatterbox-tts) as tritone imports it: the torchaudio stand-in's Kaldi
fbank and sinc resampler against independent definitions, and a tiny random checkpoint run end
to end through ChatterboxTTS.generate."""

import math

import numpy as np
import pytest
import torch

from tritone.export.chatterbox import reference
from tritone.export.chatterbox.tiny import DIMS, START_TEXT, STOP_TEXT, TEXT_VOCAB


def kaldi_fbank_by_hand(x: np.ndarray, sample_rate=16000, bins=80) -> np.ndarray:
    """Kaldi's compute-fbank-feats, written out frame by frame in float64 (dither 0)."""
    size, shift, padded = 400, 160, 512
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / (size - 1))) ** 0.85
    mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
    low, high = mel(20.0), mel(sample_rate / 2)
    delta = (high - low) / (bins + 1)
    banks = np.zeros((bins, padded // 2 + 1))
    for b in range(bins):
        left, center, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        for i in range(padded // 2):
            m = mel(i * sample_rate / padded)
            if left < m < right:
                banks[b, i] = (m - left) / (center - left) if m <= center else (right - m) / (right - center)
    rows = []
    for t in range(1 + (len(x) - size) // shift):
        frame = x[t * shift:t * shift + size].astype(np.float64)
        frame = frame - frame.mean()
        frame = np.concatenate([[frame[0] * (1 - 0.97)], frame[1:] - 0.97 * frame[:-1]])
        power = np.abs(np.fft.rfft(np.pad(frame * window, (0, padded - size)))) ** 2
        rows.append(np.log(np.maximum(banks @ power, np.finfo(np.float32).eps)))
    return np.array(rows)


def test_the_stand_in_is_what_chatterbox_imports_as_torchaudio():
    import sys

    import chatterbox.models.s3gen.xvector as xvector

    assert reference.install_torchaudio_standin() is True  # no torchaudio wheel for this torch
    assert sys.modules["torchaudio"].compliance.kaldi.fbank is reference.kaldi_fbank
    assert xvector.Kaldi.fbank is reference.kaldi_fbank
    assert sys.modules["torchaudio"].transforms.Resample is reference.Resample


def test_kaldi_fbank_equals_kaldis_definition_computed_by_hand():
    x = (0.1 * np.random.default_rng(0).standard_normal(1234)).astype(np.float32)
    ours = reference.kaldi_fbank(torch.from_numpy(x)[None], num_mel_bins=80).numpy()
    assert ours.shape == (6, 80)  # 1 + (1234 - 400) // 160 frames (snip_edges)
    np.testing.assert_allclose(ours, kaldi_fbank_by_hand(x), atol=1e-4, rtol=0)


def test_kaldi_fbank_of_a_constant_is_the_epsilon_floor_and_counts_frames_as_kaldi():
    # a constant frame is all DC: removed, so every bin sits on log(float32 eps)
    flat = reference.kaldi_fbank(torch.full((1, 400), 0.5), num_mel_bins=80)
    assert flat.shape == (1, 80)
    assert torch.allclose(flat, torch.full((1, 80), math.log(np.finfo(np.float32).eps)))
    assert reference.kaldi_fbank(torch.zeros(1, 16000), num_mel_bins=80).shape == (98, 80)
    assert reference.kaldi_fbank(torch.zeros(1, 399), num_mel_bins=80).shape == (0, 80)
    with pytest.raises(NotImplementedError, match="use_energy"):
        reference.kaldi_fbank(torch.zeros(1, 400), use_energy=True)


def test_resample_keeps_a_sine_and_gives_ceil_lengths():
    t = np.arange(2400) / 24000
    sine = torch.from_numpy(np.sin(2 * np.pi * 440 * t)).float()[None]
    down = reference.resample(sine, 24000, 16000)
    assert down.shape == (1, 1600)
    expected = np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
    assert np.max(np.abs(down[0, 100:-100].numpy() - expected[100:-100])) < 5e-4  # away from the zero-padded edges
    assert reference.Resample(24000, 16000)(torch.zeros(2, 1001)).shape == (2, 668)  # ceil(1001 * 2 / 3)
    assert reference.Resample(16000, 24000)(torch.zeros(1, 1000)).shape == (1, 1500)
    assert reference.Resample(16000, 16000)(sine) is sine


def test_a_tiny_checkpoint_generates_24_khz_audio_end_to_end(chatterbox_tiny_checkpoint):
    model = reference.load_reference(chatterbox_tiny_checkpoint)
    llama = model.t3.tfmr.config
    tiny = DIMS["tiny"]["t3"]["llama"]
    assert (llama.hidden_size, llama.num_hidden_layers, llama.num_key_value_heads) == (
        tiny["hidden_size"], tiny["num_hidden_layers"], tiny["num_key_value_heads"])
    assert (model.t3.hp.start_text_token, model.t3.hp.stop_text_token) == (START_TEXT, STOP_TEXT)
    vocab = model.tokenizer.tokenizer.get_vocab()
    assert (vocab["[START]"], vocab["[STOP]"], vocab["[SPACE]"]) == (255, 0, 2) and max(vocab.values()) < TEXT_VOCAB
    assert isinstance(model.watermarker, reference.Unwatermarked)  # perth needs pkg_resources (setuptools < 81)
    # the built-in voice has the released shapes: 150 prompt tokens, 256-d speaker, 8 s -> 200 tokens, 400 mels
    assert model.conds.t3.cond_prompt_speech_tokens.shape == (1, 150)
    assert model.conds.t3.speaker_emb.shape == (1, 256)
    gen = model.conds.gen
    assert (gen["prompt_token"].shape, gen["prompt_feat"].shape, gen["embedding"].shape) == ((1, 200), (1, 400, 80), (1, 192))

    sampled = {}
    inference = model.t3.inference

    def capped(**kwargs):  # generate asks for up to 1000 tokens; random weights rarely stop
        sampled["tokens"] = inference(**{**kwargs, "max_new_tokens": 30})
        return sampled["tokens"]

    model.t3.inference = capped
    torch.manual_seed(0)
    wav = model.generate("Hello there.")
    assert model.sr == 24000
    tokens = sampled["tokens"][0].tolist()
    start = tokens.index(6561) + 1 if 6561 in tokens else 0  # what generate keeps: after a start, before a stop,
    stop = tokens.index(6562) if 6562 in tokens else len(tokens)  # speech codes only
    valid = [t for t in tokens[start:stop] if t < 6561]
    assert 0 < len(valid) <= 30
    assert wav.shape == (1, 960 * len(valid))  # 2 mels per token, 480 samples per mel
    assert torch.isfinite(wav).all() and 0 < wav.abs().max() <= 0.99


def test_small_is_the_released_architecture_and_tiny_uses_its_state_dict_keys():
    """One loader reads every size: 'small' has the released models' keys and shapes, 'tiny' a subset of
    those keys (fewer layers, narrower). Built on the meta device: no weights allocated."""
    with torch.device("meta"):
        small = reference.build_models({"t3": DIMS["small"]["t3"], "s3gen": DIMS["small"]["s3gen"]})
        released = (reference.T3(), reference.S3Gen(), reference.VoiceEncoder())
        tiny = reference.build_models(DIMS["tiny"])
    for ours, theirs, little in zip(small, released, tiny):
        shapes = {key: tuple(value.shape) for key, value in theirs.state_dict().items()}
        assert {key: tuple(value.shape) for key, value in ours.state_dict().items()} == shapes
        assert set(little.state_dict()) <= set(shapes)
    assert sum(p.numel() for p in small[0].parameters()) == 532_405_248  # T3 on Llama_520M
    assert small[1].flow.encoder.output_size() == 512 and tiny[1].flow.encoder.output_size() == 64
