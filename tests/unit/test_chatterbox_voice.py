"""chatterbox_voice: a reference clip -> a voice, exported to ONNX from the tiny random checkpoint and
checked against ChatterboxTTS.prepare_conditionals (tokens equal, floats bounded)."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox import graphs_voice as gv
from tritone.export.chatterbox import reference
from tritone.export.chatterbox.tiny import synthetic_voice
from tritone.export.chatterbox.voice import (VOICE_BOUNDS, VOICE_INPUTS, VOICE_OUTPUTS, export_voice, reference_voice,
                                             voice_inputs)


@pytest.fixture(scope="module")
def models(chatterbox_tiny_checkpoint):
    return reference.load_reference(chatterbox_tiny_checkpoint)


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("chatterbox_voice") / "1"
    return export_voice(models, out)


def run(exported, wav):
    session = ort.InferenceSession(exported["file"], providers=["CPUExecutionProvider"])
    feeds = {name: value.numpy() for name, value in voice_inputs(wav).items()}
    return dict(zip(VOICE_OUTPUTS, session.run(list(VOICE_OUTPUTS), feeds)))


def test_export_writes_one_graph_and_its_measured_parity(exported):
    assert exported["file"].endswith("1/model.onnx")
    assert (exported["inputs"], exported["outputs"]) == ([T.AUDIO, T.AUDIO_16K], list(VOICE_OUTPUTS))
    assert (exported["sample_rate"], exported["sample_rate_16k"], exported["batch"]) == (24000, 16000, 1)
    assert exported["max_abs_onnx_vs_torch"] < 1e-3
    assert set(exported["max_abs_onnx_vs_reference"]) == set(VOICE_BOUNDS)
    assert all(exported["max_abs_onnx_vs_reference"][name] <= VOICE_BOUNDS[name] for name in VOICE_BOUNDS)


def test_a_new_clip_gives_prepare_conditionals_tokens_exactly_and_its_floats_within_bounds(models, exported):
    wav = synthetic_voice(seconds=5.2, seed=7)  # not one of the exporter's parity clips
    got, expected = run(exported, wav), {k: v.detach().numpy() for k, v in reference_voice(models, wav).items()}
    # 124800 samples: 260 mel frames of 480 -> 130 flow tokens; 83200 at 16 kHz: 520 frames of 160 -> 130 T3 tokens
    assert got[T.PROMPT_TOKENS].shape == (1, 130) and got[T.PROMPT_MEL].shape == (1, 260, 80)
    assert got[T.PROMPT_SPEECH_TOKENS].shape == (1, 130)
    assert got[T.SPEAKER_EMB].shape == (1, 256) and got[T.XVECTOR].shape == (1, 192)
    np.testing.assert_array_equal(got[T.PROMPT_TOKENS], expected[T.PROMPT_TOKENS])
    np.testing.assert_array_equal(got[T.PROMPT_SPEECH_TOKENS], expected[T.PROMPT_SPEECH_TOKENS])
    for name, bound in VOICE_BOUNDS.items():
        assert np.max(np.abs(got[name] - expected[name])) <= bound, name
    assert got[T.PROMPT_TOKENS].dtype == np.int64 and 0 <= got[T.PROMPT_TOKENS].min() and got[T.PROMPT_TOKENS].max() < 6561


def test_the_built_in_voice_is_the_graph_of_the_synthetic_clip(models, exported):
    """write_random_checkpoint made conds.pt with prepare_conditionals on synthetic_voice(seed=0), 8 s."""
    got = run(exported, synthetic_voice(seconds=8.0, seed=0))
    np.testing.assert_array_equal(got[T.PROMPT_SPEECH_TOKENS], models.conds.t3.cond_prompt_speech_tokens.numpy())
    np.testing.assert_array_equal(got[T.PROMPT_TOKENS], models.conds.gen["prompt_token"].numpy())
    assert got[T.PROMPT_SPEECH_TOKENS].shape == (1, 150) and got[T.PROMPT_TOKENS].shape == (1, 200)
    assert np.max(np.abs(got[T.XVECTOR] - models.conds.gen["embedding"].detach().numpy())) <= VOICE_BOUNDS[T.XVECTOR]


def test_long_clips_keep_6_s_for_t3_and_10_s_for_the_flow_but_the_whole_clip_for_the_speaker(models, exported):
    wav = synthetic_voice(seconds=11.3, seed=1)
    got = run(exported, wav)
    assert got[T.PROMPT_SPEECH_TOKENS].shape == (1, 150)  # 6 s at 25 Hz
    assert got[T.PROMPT_TOKENS].shape == (1, 250) and got[T.PROMPT_MEL].shape == (1, 500, 80)  # 10 s
    cut = run(exported, wav[:10 * 24000])
    np.testing.assert_array_equal(cut[T.PROMPT_TOKENS], got[T.PROMPT_TOKENS])
    assert np.max(np.abs(cut[T.SPEAKER_EMB] - got[T.SPEAKER_EMB])) > 1e-4  # the voice encoder reads past 10 s


def test_front_ends_equal_the_reference_definitions(models):
    wav16 = torch.from_numpy(gv.soxr_16k(synthetic_voice(seconds=3.0, seed=3)))[None]
    fbank = gv.KaldiFbank()(wav16)[0]  # one folded matrix vs the stand-in's step-by-step Kaldi
    np.testing.assert_allclose(fbank.numpy(), reference.kaldi_fbank(wav16, num_mel_bins=80).numpy(), atol=2e-4, rtol=0)
    tokenizer_mel = gv.TokenizerMel(models.s3gen.tokenizer._mel_filters)(wav16)
    np.testing.assert_allclose(tokenizer_mel.numpy(), models.s3gen.tokenizer.log_mel_spectrogram(wav16).numpy(),
                               atol=1e-4, rtol=0)
    wav24 = torch.from_numpy(synthetic_voice(seconds=3.0, seed=3))[None]
    mel = gv.FlowPromptMel()(wav24)
    assert mel.shape == (1, 150, 80)
    np.testing.assert_allclose(mel.numpy(), models.s3gen.mel_extractor(wav24).transpose(1, 2).numpy(), atol=1e-3, rtol=0)


def test_sinc_in_place_of_soxr_would_change_t3s_tokens(models):
    """Why AUDIO_16K is an input: the graph's own 24 -> 16 kHz (the flow's, torchaudio's sinc) is close
    to soxr HQ, but not close enough for the tokenizer's rounding."""
    wav = synthetic_voice(seconds=8.0, seed=0)
    soxr = torch.from_numpy(gv.soxr_16k(wav))[None]
    sinc = gv.SincResample(24000, 16000)(torch.from_numpy(wav)[None])
    assert sinc.shape == soxr.shape == (1, 128000)
    assert 1e-4 < float((sinc - soxr).abs().max()) < 1e-3
    tokens = gv.S3TokenizerGraph(models.s3gen.tokenizer)
    with torch.no_grad():
        assert int((tokens(soxr[:, :96000]) != tokens(sinc[:, :96000])).sum()) > 0
