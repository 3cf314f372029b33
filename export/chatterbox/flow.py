"""Export Chatterbox's token-to-audio half: chatterbox_flow and chatterbox_vocoder (ONNX), each
checked against the torch module it came from (export_graph) and against the reference package
itself (S3Gen's flow.inference, mel2wav.inference, and the whole S3Gen.inference) on the same
noise: the reference draws its noise from torch's global generator, so the check seeds it, lets
the reference draw, seeds it again and draws the same tensors for the graph's noise inputs.

    export_flow(models, out_dir)     -> chatterbox_flow/1/model.onnx
    export_vocoder(models, out_dir)  -> chatterbox_vocoder/1/model.onnx

`models` is the reference ChatterboxTTS (its .s3gen) or an S3Gen.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.graphs_flow import (
    EULER_STEPS,
    HARMONICS,
    TOKEN_MEL_RATIO,
    ChatterboxFlow,
    ChatterboxVocoder,
)
from tritone.export.onnx_graph import ParityError, export_graph

# max |onnx - reference| <= bound * max(1, max |reference|). The flow integrates 10 Euler steps of
# a deep estimator from the same noise: float32 rounding in ONNX Runtime vs torch grows through
# them (measured: tiny ~1e-6, small-random ~1e-5 relative). The vocoder's sine source is a
# running sum of f0 over the utterance, computed per frame here and per sample by the reference:
# the two roundings differ by ~1e-6 cycles per second of audio.
FLOW_TOLERANCE = 1e-3
VOCODER_TOLERANCE = 1e-3

FLOW_INPUTS = (T.SPEECH_TOKENS, T.SPEECH_TOKEN_LENGTHS, T.PROMPT_TOKENS, T.PROMPT_TOKEN_LENGTHS, T.PROMPT_MEL,
               T.XVECTOR, T.PROMPT_NOISE, T.FLOW_NOISE)
FLOW_OUTPUTS = (T.MEL, T.MEL_LENGTHS)
VOCODER_INPUTS = (T.MEL, T.MEL_LENGTHS, T.SOURCE_PHASE, T.SOURCE_NOISE)
VOCODER_OUTPUTS = (T.AUDIO, T.FRAME_PHASE)


def _s3gen(models):
    return getattr(models, "s3gen", models)


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _bound(reference: torch.Tensor, tolerance: float) -> float:
    return tolerance * max(1.0, float(reference.abs().max()))


def _check(what: str, ours: np.ndarray, reference: torch.Tensor, tolerance: float) -> float:
    reference = reference.detach().numpy()
    if ours.shape != reference.shape:
        raise ParityError(f"{what}: shape {ours.shape}, the reference gives {reference.shape}")
    diff = float(np.max(np.abs(ours - reference)))
    bound = tolerance * max(1.0, float(np.max(np.abs(reference))))
    print(f"  {what}: max |onnx - reference| = {diff:.2e} (bound {bound:.2e})")
    if not diff <= bound:
        raise ParityError(f"{what} differs from the reference by {diff:.3e} (bound {bound:.3e})")
    return diff


# --- example inputs -------------------------------------------------------------------------
def flow_example(vocab: int, mel_bins: int, xvector: int, lengths=(9, 6), prompt_lengths=(7, 10), seed: int = 0):
    """Rows of different token and prompt lengths, padded: what the exporter traces and checks."""
    gen = torch.Generator().manual_seed(seed)
    rows, width, prompt = len(lengths), max(lengths), max(prompt_lengths)
    return {
        T.SPEECH_TOKENS: torch.randint(0, vocab, (rows, width), generator=gen),
        T.SPEECH_TOKEN_LENGTHS: torch.tensor(lengths),
        T.PROMPT_TOKENS: torch.randint(0, vocab, (rows, prompt), generator=gen),
        T.PROMPT_TOKEN_LENGTHS: torch.tensor(prompt_lengths),
        T.PROMPT_MEL: torch.randn(rows, TOKEN_MEL_RATIO * prompt, mel_bins, generator=gen),
        T.XVECTOR: torch.randn(rows, xvector, generator=gen),
        T.PROMPT_NOISE: torch.randn(rows, mel_bins, TOKEN_MEL_RATIO * prompt, generator=gen),
        T.FLOW_NOISE: torch.randn(rows, mel_bins, TOKEN_MEL_RATIO * width, generator=gen),
    }


def vocoder_example(mel_bins: int, frame_samples: int, lengths=(14, 9), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    rows, frames = len(lengths), max(lengths)
    return {
        T.MEL: torch.randn(rows, mel_bins, frames, generator=gen) - 4.0,  # log-mel scale
        T.MEL_LENGTHS: torch.tensor(lengths),
        T.SOURCE_PHASE: torch.rand(rows, HARMONICS, generator=gen) - 0.5,
        T.SOURCE_NOISE: torch.randn(rows, frames * frame_samples, generator=gen),
    }


# --- the reference, on the graph's noise ----------------------------------------------------------
def reference_flow(s3gen, tokens, prompt_tokens, prompt_mel, xvector, seed: int, steps: int = EULER_STEPS):
    """(reference mel [1, 80, 2 T], the graph's noise inputs that equal the reference's own draw)."""
    torch.manual_seed(seed)
    with torch.inference_mode():
        mel, _ = s3gen.flow.inference(token=tokens, token_len=torch.tensor([tokens.shape[1]]), prompt_token=prompt_tokens,
                                      prompt_token_len=torch.tensor([prompt_tokens.shape[1]]), prompt_feat=prompt_mel,
                                      prompt_feat_len=None, embedding=xvector, finalize=True, n_timesteps=steps)
    torch.manual_seed(seed)
    frames = TOKEN_MEL_RATIO * prompt_tokens.shape[1]
    z = torch.randn(1, mel.shape[1], frames + mel.shape[2])  # randn_like(mu) inside CausalConditionalCFM
    return mel, z[:, :, :frames], z[:, :, frames:]


def source_draws(hift, frames: int, seed: int):
    """The graph's SOURCE_PHASE and SOURCE_NOISE equal to what SineGen draws after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return _source_draws(hift, frames)


def _source_draws(hift, frames: int):
    from torch.distributions.uniform import Uniform

    harmonics = hift.m_source.l_sin_gen.harmonic_num + 1
    samples = frames * ChatterboxVocoder(hift).frame_samples
    phase = Uniform(low=-np.pi, high=np.pi).sample(sample_shape=(1, harmonics, 1))
    phase[:, 0, :] = 0
    noise = torch.randn(1, harmonics, samples)
    weight = hift.m_source.l_linear.weight[0].detach()
    mixed = torch.einsum("h,bhs->bs", weight, noise) / torch.linalg.vector_norm(weight)
    return phase[:, :, 0] / (2 * math.pi), mixed


def reference_vocoder(s3gen, mel, seed: int):
    torch.manual_seed(seed)
    with torch.inference_mode():
        audio, _ = s3gen.mel2wav.inference(speech_feat=mel)
    phase, noise = source_draws(s3gen.mel2wav, mel.shape[2], seed)
    return audio, phase, noise


def reference_case(s3gen, tokens: int = 12, prompt: int = 8, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    flow = s3gen.flow
    return (torch.randint(0, flow.vocab_size, (1, tokens), generator=gen),
            torch.randint(0, flow.vocab_size, (1, prompt), generator=gen),
            torch.randn(1, TOKEN_MEL_RATIO * prompt, flow.output_size, generator=gen) - 4.0,
            torch.randn(1, flow.spk_embed_affine_layer.in_features, generator=gen))


def _flow_feed(tokens, prompt_tokens, prompt_mel, xvector, prompt_noise, noise) -> dict:
    return {T.SPEECH_TOKENS: tokens.numpy(), T.SPEECH_TOKEN_LENGTHS: np.array([tokens.shape[1]]),
            T.PROMPT_TOKENS: prompt_tokens.numpy(), T.PROMPT_TOKEN_LENGTHS: np.array([prompt_tokens.shape[1]]),
            T.PROMPT_MEL: prompt_mel.numpy(), T.XVECTOR: xvector.numpy(), T.PROMPT_NOISE: prompt_noise.numpy(),
            T.FLOW_NOISE: noise.numpy()}


def _vocoder_feed(mel, phase, noise) -> dict:
    mel = np.asarray(mel, dtype=np.float32)
    return {T.MEL: mel, T.MEL_LENGTHS: np.array([mel.shape[2]]), T.SOURCE_PHASE: phase.numpy(),
            T.SOURCE_NOISE: noise.numpy()}


def flow_reference_parity(s3gen, flow_path: Path, steps: int = EULER_STEPS, tolerance: float = FLOW_TOLERANCE) -> float:
    case = reference_case(s3gen)
    reference, prompt_noise, noise = reference_flow(s3gen, *case, seed=11, steps=steps)
    ours = _session(flow_path).run([T.MEL], _flow_feed(*case, prompt_noise, noise))[0]
    return _check("flow vs S3Gen flow.inference", ours, reference, tolerance)


def vocoder_reference_parity(s3gen, vocoder_path: Path, tolerance: float = VOCODER_TOLERANCE) -> float:
    gen = torch.Generator().manual_seed(5)
    mel = torch.randn(1, s3gen.flow.output_size, 30, generator=gen) - 4.0
    reference, phase, noise = reference_vocoder(s3gen, mel, seed=13)
    ours = _session(vocoder_path).run([T.AUDIO], _vocoder_feed(mel, phase, noise))[0]
    return _check("vocoder vs S3Gen mel2wav.inference", ours, reference, tolerance)


def s3gen_reference_parity(s3gen, flow_path: Path, vocoder_path: Path, tolerance: float = VOCODER_TOLERANCE,
                           voice: dict | None = None) -> float:
    """flow then vocoder (then the reference's 40 ms fade-in) vs S3Gen.inference, one seed for all its draws;
    the prompt is `voice` (a reference ref_dict: Conditionals.gen) when given, else random."""
    tokens, prompt_tokens, prompt_mel, xvector = reference_case(s3gen, tokens=10, prompt=6, seed=8)
    if voice is not None:
        prompt_tokens, prompt_mel, xvector = (voice[key].detach() for key in ("prompt_token", "prompt_feat", "embedding"))
    ref_dict = dict(prompt_token=prompt_tokens, prompt_token_len=torch.tensor([prompt_tokens.shape[1]]),
                    prompt_feat=prompt_mel, prompt_feat_len=None, embedding=xvector)
    torch.manual_seed(21)
    reference, _ = s3gen.inference(tokens, ref_dict=ref_dict)
    torch.manual_seed(21)  # the reference's draws, in its order: the flow's noise, then HiFT's source
    frames = TOKEN_MEL_RATIO * prompt_tokens.shape[1]
    z = torch.randn(1, s3gen.flow.output_size, frames + TOKEN_MEL_RATIO * tokens.shape[1])
    mel = _session(flow_path).run([T.MEL], _flow_feed(tokens, prompt_tokens, prompt_mel, xvector, z[:, :, :frames],
                                                      z[:, :, frames:]))[0]
    phase, noise = _source_draws(s3gen.mel2wav, mel.shape[2])
    audio = _session(vocoder_path).run([T.AUDIO], _vocoder_feed(mel, phase, noise))[0]
    fade = s3gen.trim_fade.numpy()
    audio[:, :len(fade)] *= fade
    return _check("flow + vocoder vs S3Gen.inference", audio, reference, tolerance)


# --- export ---------------------------------------------------------------------------------
def export_flow(models, out_dir: Path, steps: int = EULER_STEPS, tolerance: float = FLOW_TOLERANCE) -> dict:
    """chatterbox_flow/1/model.onnx: tokens + prompt + noise -> mel, `steps` Euler steps inside."""
    s3gen = _s3gen(models)
    flow = s3gen.flow
    path = Path(out_dir) / T.ONNX_FILE
    inputs = flow_example(flow.vocab_size, flow.output_size, flow.spk_embed_affine_layer.in_features)
    onnx_diff = export_graph(
        ChatterboxFlow(flow, steps), inputs, list(FLOW_OUTPUTS),
        {T.SPEECH_TOKENS: {0: "batch", 1: "tokens"}, T.SPEECH_TOKEN_LENGTHS: {0: "batch"},
         T.PROMPT_TOKENS: {0: "batch", 1: "prompt"}, T.PROMPT_TOKEN_LENGTHS: {0: "batch"},
         T.PROMPT_MEL: {0: "batch", 1: "prompt_frames"}, T.XVECTOR: {0: "batch"},
         T.PROMPT_NOISE: {0: "batch", 2: "prompt_frames"}, T.FLOW_NOISE: {0: "batch", 2: "frames"},
         T.MEL: {0: "batch", 2: "frames"}, T.MEL_LENGTHS: {0: "batch"}},
        path, tolerance=tolerance)
    reference_diff = flow_reference_parity(s3gen, path, steps, tolerance)
    return {"file": str(path), "inputs": list(FLOW_INPUTS), "outputs": list(FLOW_OUTPUTS), "euler_steps": steps,
            "cfg_rate": float(flow.decoder.inference_cfg_rate), "mel_bins": int(flow.output_size),
            "token_mel_ratio": TOKEN_MEL_RATIO, "max_abs_onnx_vs_torch": onnx_diff,
            "max_abs_onnx_vs_reference": reference_diff}


def export_vocoder(models, out_dir: Path, tolerance: float = VOCODER_TOLERANCE, flow_path: Path | None = None) -> dict:
    """chatterbox_vocoder/1/model.onnx: mel -> 24 kHz audio (HiFT, STFT/iSTFT as convolutions).

    With the exported flow (`flow_path`, by default chatterbox_flow/1/model.onnx beside this model's
    folder when it exists), also checks flow + vocoder against S3Gen.inference.
    """
    s3gen = _s3gen(models)
    hift = s3gen.mel2wav
    vocoder = ChatterboxVocoder(hift)
    path = Path(out_dir) / T.ONNX_FILE
    onnx_diff = export_graph(
        vocoder, vocoder_example(s3gen.flow.output_size, vocoder.frame_samples), list(VOCODER_OUTPUTS),
        {T.MEL: {0: "batch", 2: "frames"}, T.MEL_LENGTHS: {0: "batch"}, T.SOURCE_PHASE: {0: "batch"},
         T.SOURCE_NOISE: {0: "batch", 1: "samples"}, T.AUDIO: {0: "batch", 1: "samples"},
         T.FRAME_PHASE: {0: "batch", 2: "frames_and_1"}},
        path, tolerance=tolerance)
    reference_diff = vocoder_reference_parity(s3gen, path, tolerance)
    meta = {"file": str(path), "inputs": list(VOCODER_INPUTS), "outputs": list(VOCODER_OUTPUTS),
            "sample_rate": int(hift.sampling_rate), "frame_samples": vocoder.frame_samples, "harmonics": vocoder.harmonics,
            "max_abs_onnx_vs_torch": onnx_diff, "max_abs_onnx_vs_reference": reference_diff}
    if flow_path is None:
        flow_path = Path(out_dir).resolve().parent.parent / T.CHATTERBOX_FLOW / "1" / T.ONNX_FILE
        flow_path = flow_path if flow_path.exists() else None
    if flow_path is not None:
        conds = getattr(models, "conds", None)  # the checkpoint's built-in voice, when there is one
        voice = dict(conds.gen) if conds is not None else None
        meta["max_abs_s3gen_vs_reference"] = s3gen_reference_parity(s3gen, Path(flow_path), path, tolerance, voice)
    return meta
