"""chatterbox_flow and chatterbox_vocoder on the tiny random checkpoint: ONNX against the reference
package (S3Gen's flow.inference, mel2wav.inference, S3Gen.inference on the same noise), padded
rows against the same rows alone, seeded noise, and the streaming reach at the chosen context."""

import numpy as np
import pytest
import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox import noise
from tritone.ensemble.chatterbox.codec import (
    FLOW_LEFT_CONTEXT_TOKENS,
    FLOW_LOOKAHEAD_TOKENS,
    STREAMED_AUDIO_BOUND,
    VOCODER_LEFT_CONTEXT_FRAMES,
    VOCODER_LOOKAHEAD_FRAMES,
)
from tritone.ensemble.chatterbox.graphs_flow import ChatterboxFlow, ChatterboxVocoder


@pytest.fixture(scope="module")
def tts(chatterbox_tiny_checkpoint):
    from tritone.export.chatterbox.reference import load_reference

    return load_reference(chatterbox_tiny_checkpoint)


@pytest.fixture(scope="module")
def exported(tts, tmp_path_factory):
    """(flow metadata, vocoder metadata, flow session, vocoder session) of a tiny export."""
    import onnxruntime as ort

    from tritone.export.chatterbox.flow import export_flow, export_vocoder

    out = tmp_path_factory.mktemp("chatterbox-flow")
    flow_dir, vocoder_dir = out / T.CHATTERBOX_FLOW / "1", out / T.CHATTERBOX_VOCODER / "1"
    flow_dir.mkdir(parents=True)
    vocoder_dir.mkdir(parents=True)
    flow_meta = export_flow(tts, flow_dir)
    vocoder_meta = export_vocoder(tts, vocoder_dir)  # finds the flow beside it: checks S3Gen.inference too
    sessions = [ort.InferenceSession(meta["file"], providers=["CPUExecutionProvider"]) for meta in (flow_meta, vocoder_meta)]
    return flow_meta, vocoder_meta, *sessions


def _voice(tts):
    gen = tts.conds.gen
    return (gen["prompt_token"][0].detach().numpy(), gen["prompt_feat"][0].detach().numpy(),
            gen["embedding"].detach().reshape(-1).numpy())


def test_the_graphs_equal_the_reference(exported, tts):
    flow_meta, vocoder_meta, _, _ = exported
    assert flow_meta["inputs"] == [T.SPEECH_TOKENS, T.SPEECH_TOKEN_LENGTHS, T.PROMPT_TOKENS, T.PROMPT_TOKEN_LENGTHS,
                                   T.PROMPT_MEL, T.XVECTOR, T.PROMPT_NOISE, T.FLOW_NOISE]
    assert flow_meta["outputs"] == [T.MEL, T.MEL_LENGTHS]
    assert (flow_meta["euler_steps"], flow_meta["cfg_rate"], flow_meta["mel_bins"]) == (10, 0.7, 80)
    assert vocoder_meta["outputs"] == [T.AUDIO, T.FRAME_PHASE]
    assert (vocoder_meta["sample_rate"], vocoder_meta["frame_samples"], vocoder_meta["harmonics"]) == (24000, 480, 9)
    # measured on tiny: flow ~3e-6 (mel up to ~6), vocoder and the whole S3Gen ~1e-7 (audio up to ~0.3)
    assert flow_meta["max_abs_onnx_vs_torch"] < 2e-5
    assert flow_meta["max_abs_onnx_vs_reference"] < 2e-5
    assert vocoder_meta["max_abs_onnx_vs_torch"] < 2e-6
    assert vocoder_meta["max_abs_onnx_vs_reference"] < 2e-6
    assert vocoder_meta["max_abs_s3gen_vs_reference"] < 2e-6


def test_the_reference_check_sees_the_noise(exported, tts):
    """The parity above is not vacuous: the reference's audio is far from silent, and other noise
    (another seed) moves the output by orders of magnitude more than the bound."""
    from tritone.export.chatterbox.flow import _flow_feed, reference_case, reference_flow

    _, _, flow_session, _ = exported
    case = reference_case(tts.s3gen)
    mel, prompt_noise, flow_noise = reference_flow(tts.s3gen, *case, seed=11)
    ours = flow_session.run([T.MEL], _flow_feed(*case, prompt_noise, flow_noise))[0]
    other = flow_session.run([T.MEL], _flow_feed(*case, prompt_noise, torch.randn(flow_noise.shape)))[0]
    assert np.max(np.abs(ours - mel.numpy())) < 2e-5
    assert np.max(np.abs(other - mel.numpy())) > 0.1
    torch.manual_seed(0)
    audio, _ = tts.s3gen.inference(case[0], ref_dict=dict(tts.conds.gen))
    assert float(audio.abs().max()) > 0.01


def test_a_padded_flow_row_equals_the_row_alone(exported, tts):
    _, _, flow_session, _ = exported
    voice_tokens, voice_mel, voice_xvector = _voice(tts)
    rng = np.random.default_rng(4)
    prompts = [voice_tokens[:40], rng.integers(0, 6561, 9), voice_tokens[:23]]
    tokens = [rng.integers(0, 6561, n) for n in (17, 5, 11)]
    mels = [voice_mel[:80], (rng.standard_normal((18, 80)) - 4).astype(np.float32), voice_mel[:46]]
    xvectors = np.stack([voice_xvector, rng.standard_normal(192).astype(np.float32), voice_xvector])
    rows, width, prompt = 3, 17, 40

    def pad(arrays, size, axis):
        return np.stack([np.pad(a, [(0, size - a.shape[axis]) if i == axis else (0, 0) for i in range(a.ndim)])
                         for a in arrays])

    prompt_noises = [noise.prompt_noise(s, 2 * len(p)) for s, p in zip((1, 2, 3), prompts)]
    flow_noises = [noise.flow_noise(s, 0, 2 * len(t)) for s, t in zip((1, 2, 3), tokens)]
    feed = {T.SPEECH_TOKENS: pad(tokens, width, 0), T.SPEECH_TOKEN_LENGTHS: np.array([len(t) for t in tokens]),
            T.PROMPT_TOKENS: pad(prompts, prompt, 0), T.PROMPT_TOKEN_LENGTHS: np.array([len(p) for p in prompts]),
            T.PROMPT_MEL: pad(mels, 2 * prompt, 0), T.XVECTOR: xvectors,
            T.PROMPT_NOISE: pad(prompt_noises, 2 * prompt, 1), T.FLOW_NOISE: pad(flow_noises, 2 * width, 1)}
    mel, mel_lengths = flow_session.run([T.MEL, T.MEL_LENGTHS], feed)
    assert mel.shape == (rows, 80, 2 * width) and mel_lengths.tolist() == [34, 10, 22]
    for b in range(rows):
        n = len(tokens[b])
        alone = flow_session.run([T.MEL], {
            T.SPEECH_TOKENS: tokens[b][None], T.SPEECH_TOKEN_LENGTHS: np.array([n]), T.PROMPT_TOKENS: prompts[b][None],
            T.PROMPT_TOKEN_LENGTHS: np.array([len(prompts[b])]), T.PROMPT_MEL: mels[b][None],
            T.XVECTOR: xvectors[b:b + 1], T.PROMPT_NOISE: prompt_noises[b][None], T.FLOW_NOISE: flow_noises[b][None]})[0]
        assert np.max(np.abs(mel[b:b + 1, :, :2 * n] - alone)) < 2e-5, b
        assert not mel[b, :, 2 * n:].any()


def test_a_padded_vocoder_row_equals_the_row_alone(exported):
    _, _, _, vocoder_session = exported
    rng = np.random.default_rng(5)
    lengths = [23, 7, 16]
    mel = (rng.standard_normal((3, 80, 23)) - 4).astype(np.float32)
    phase = np.stack([noise.source_phase(s) for s in (1, 2, 3)])
    source = np.stack([noise.source_noise(s, 0, 23) for s in (1, 2, 3)])
    audio, frame_phase = vocoder_session.run([T.AUDIO, T.FRAME_PHASE], {
        T.MEL: mel, T.MEL_LENGTHS: np.array(lengths), T.SOURCE_PHASE: phase, T.SOURCE_NOISE: source})
    assert audio.shape == (3, 23 * 480) and frame_phase.shape == (3, 9, 24)
    for b, n in enumerate(lengths):
        alone, alone_phase = vocoder_session.run([T.AUDIO, T.FRAME_PHASE], {
            T.MEL: mel[b:b + 1, :, :n], T.MEL_LENGTHS: np.array([n]), T.SOURCE_PHASE: phase[b:b + 1],
            T.SOURCE_NOISE: source[b:b + 1, :n * 480]})
        assert np.max(np.abs(audio[b:b + 1, :n * 480] - alone)) < 1e-6, b
        assert np.max(np.abs(frame_phase[b:b + 1, :, :n + 1] - alone_phase)) < 1e-5, b
        assert not audio[b, n * 480:].any()
        assert np.array_equal(frame_phase[b, :, n:], np.repeat(frame_phase[b, :, n:n + 1], 24 - n, axis=1))
    np.testing.assert_allclose(frame_phase[:, :, 0], np.mod(phase, 1.0), atol=1e-6)


def test_seeded_noise_is_addressed_by_position():
    whole = noise.flow_noise(7, 0, 40)
    assert whole.shape == (80, 40) and whole.dtype == np.float32
    np.testing.assert_array_equal(noise.flow_noise(7, 10, 20), whole[:, 10:30])
    assert not np.array_equal(noise.flow_noise(8, 0, 40), whole)
    source = noise.source_noise(7, 0, 6)
    assert source.shape == (2880,)
    np.testing.assert_array_equal(noise.source_noise(7, 2, 3), source[960:2400])
    assert abs(float(whole.std()) - 1.0) < 0.05 and abs(float(source.std()) - 1.0) < 0.05
    phase = noise.source_phase(7)
    assert phase.shape == (9,) and phase[0] == 0.0 and np.all(np.abs(phase) <= 0.5)
    np.testing.assert_array_equal(noise.prompt_noise(7, 12), noise.prompt_noise(7, 30)[:, :12])
    with pytest.raises(ValueError, match="seed, start and frames must be >= 0"):
        noise.flow_noise(-1, 0, 2)


def test_a_seeded_request_decodes_the_same_audio(tts):
    from tritone.export.chatterbox import reach

    flow, vocoder = ChatterboxFlow(tts.s3gen.flow).eval(), ChatterboxVocoder(tts.s3gen.mel2wav).eval()
    tokens = np.random.default_rng(9).integers(0, 6561, 20)
    first = reach.one_shot(flow, vocoder, reach.voice_case(dict(tts.conds.gen), tokens, seed=5))
    again = reach.one_shot(flow, vocoder, reach.voice_case(dict(tts.conds.gen), tokens, seed=5))
    other = reach.one_shot(flow, vocoder, reach.voice_case(dict(tts.conds.gen), tokens, seed=6))
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert float((first[1] - other[1]).abs().max()) > 1e-3


def test_the_vocoder_windows_equal_its_one_shot_decode_at_the_chosen_context(tts):
    """The vocoder alone on an exact mel: measured on tiny and small-random (graphs_flow's docstring)."""
    from tritone.export.chatterbox import reach

    vocoder = ChatterboxVocoder(tts.s3gen.mel2wav).eval()
    gen = torch.Generator().manual_seed(3)
    mel = torch.randn(80, 64, generator=gen) * 0.5 + torch.cumsum(torch.randn(80, 64, generator=gen) * 0.3, 1) - 5
    chosen = reach.vocoder_error(vocoder, mel, 1, 20, VOCODER_LEFT_CONTEXT_FRAMES, VOCODER_LOOKAHEAD_FRAMES)
    assert chosen < 1e-6
    assert reach.vocoder_error(vocoder, mel, 1, 20, VOCODER_LEFT_CONTEXT_FRAMES, 4) > 1e-4  # too little lookahead
    assert reach.vocoder_error(vocoder, mel, 1, 20, 4, VOCODER_LOOKAHEAD_FRAMES) > 1e-4  # too little left context


def test_a_streamed_decode_is_within_its_bound_of_the_one_shot_decode(tts):
    from tritone.export.chatterbox import reach

    flow, vocoder = ChatterboxFlow(tts.s3gen.flow).eval(), ChatterboxVocoder(tts.s3gen.mel2wav).eval()
    case = reach.voice_case(dict(tts.conds.gen), np.random.default_rng(2).integers(0, 6561, 60), seed=3)
    reference = reach.one_shot(flow, vocoder, case)
    mel_error, audio_error = reach.streaming_error(flow, vocoder, case, [12, 24], FLOW_LEFT_CONTEXT_TOKENS,
                                                   FLOW_LOOKAHEAD_TOKENS, reference)
    assert audio_error <= STREAMED_AUDIO_BOUND  # measured 3.2e-3 (audio up to 0.10)
    assert reach.streaming_error(flow, vocoder, case, [12, 24], 0, 0, reference)[1] > STREAMED_AUDIO_BOUND  # 9.1e-2
    whole = reach.streaming_error(flow, vocoder, case, [12, 24], 60, 60, reference)
    assert whole == (0.0, 0.0)  # windows that see the whole stream are the one-shot decode
