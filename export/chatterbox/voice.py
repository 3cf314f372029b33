"""chatterbox_voice: a reference clip -> a Chatterbox voice, as one ONNX graph checked against the reference.

    export_voice(models, out_dir)  ->  out_dir/model.onnx + its metadata (dict)

`models` is the reference `ChatterboxTTS` (tritone.export.chatterbox.reference.load_reference).
The graph (ensemble/chatterbox/graphs_voice.py: ChatterboxVoiceGraph) computes what
`ChatterboxTTS.prepare_conditionals` computes, all of it in ONNX:

- the mel front-ends (S3Tokenizer's 128-mel log10, S3Gen's 80-mel 24 kHz log, the voice
  encoder's 40-mel power, Kaldi's fbank for CAMPPlus) as fixed strided convolutions (window
  and DFT folded into one matrix; the fbank's DC removal and pre-emphasis too) and matmuls;
- the voice encoder's trim (librosa.effects.trim, top 20 dB), its 160-frame partials (their
  number computed in the graph), the 3-layer LSTM, projection and norms;
- S3Tokenizer v2's encoder (its complex rotary table as real cos / sin) and FSQ quantizer;
- CAMPPlus (x-vector), S3Gen's 24 -> 16 kHz resampling (the reference's torchaudio-style sinc
  kernel, as a convolution).

One thing stays outside, because no ONNX operator computes it: T3's 16 kHz clip is
`librosa.resample` in the reference, i.e. soxr at quality HQ (a multi-stage polyphase resampler
with its own filter design). The graph takes it as its second input (AUDIO_16K =
`graphs_voice.soxr_16k(audio)`, numpy + the soxr package). Resampling that clip with the
graph's sinc kernel instead differs from soxr by up to 4.4e-4 (max |difference| over four
synthetic 8 s clips) and changed 2..7 of the 150 prompt tokens of the tiny tokenizer: the tokens
would not equal the reference's, so the graph does not do it.

Parity, on synthetic clips of 8 s, 11.3 s (past the 10 s the flow keeps and the 6 s T3's prompt
keeps) and 3.7 s: every token equal to the reference's, floats within VOICE_BOUNDS (absolute;
measured on the tiny and on the small (released sizes, random weights; a 543 MB graph) checkpoints:
speaker embedding and x-vector ~6e-8, log mel ~2.5e-4, the latter where the DFT-as-convolution
and the FFT round differently in quiet frames). Clips must be longer than 30 ms (the 24 kHz mel's
reflect padding; the reference fails there too).
One clip per call: the graph's batch axis is 1 (lengths differ; the reference has no batching).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.graphs_voice import S3_SR, S3GEN_SR, ChatterboxVoiceGraph, soxr_16k
from tritone.export.onnx_graph import ParityError, export_graph

VOICE_INPUTS = (T.AUDIO, T.AUDIO_16K)
VOICE_OUTPUTS = (T.SPEAKER_EMB, T.PROMPT_SPEECH_TOKENS, T.PROMPT_TOKENS, T.PROMPT_MEL, T.XVECTOR)
VOICE_TOLERANCE = 1e-4  # ONNX vs the torch graph, relative to each output's scale (export_graph)
VOICE_BOUNDS = {T.SPEAKER_EMB: 1e-4, T.PROMPT_MEL: 2e-3, T.XVECTOR: 1e-4}  # ONNX vs the reference, absolute
PARITY_CLIPS = ((8.0, 0), (11.3, 1), (3.7, 2))  # (seconds, seed) of synthetic_voice
DYNAMIC_AXES = {T.AUDIO: {1: "samples"}, T.AUDIO_16K: {1: "samples_16k"}, T.PROMPT_SPEECH_TOKENS: {1: "prompt"},
                T.PROMPT_TOKENS: {1: "tokens"}, T.PROMPT_MEL: {1: "frames"}}


def voice_inputs(wav24: np.ndarray) -> dict[str, torch.Tensor]:
    """The graph's inputs for a 24 kHz clip: it, and its soxr HQ 16 kHz version."""
    wav24 = np.ascontiguousarray(wav24, dtype=np.float32)
    return {T.AUDIO: torch.from_numpy(wav24)[None], T.AUDIO_16K: torch.from_numpy(soxr_16k(wav24))[None]}


def reference_voice(models, wav24: np.ndarray) -> dict[str, torch.Tensor]:
    """ChatterboxTTS.prepare_conditionals on the clip (through a 24 kHz float WAV, as it loads one),
    its conditioning under the graph's output names; the model's own conditionals are left as found."""
    import soundfile

    saved = models.conds
    try:
        with tempfile.TemporaryDirectory() as tmp:
            clip = Path(tmp) / "reference.wav"
            soundfile.write(clip, np.asarray(wav24, dtype=np.float32), S3GEN_SR, subtype="FLOAT")
            models.prepare_conditionals(str(clip))
        t3, gen = models.conds.t3, models.conds.gen
        return {T.SPEAKER_EMB: t3.speaker_emb, T.PROMPT_SPEECH_TOKENS: t3.cond_prompt_speech_tokens,
                T.PROMPT_TOKENS: gen["prompt_token"], T.PROMPT_MEL: gen["prompt_feat"], T.XVECTOR: gen["embedding"]}
    finally:
        models.conds = saved


def voice_reference_parity(models, path: Path, clips=PARITY_CLIPS) -> dict[str, float]:
    """Run the exported graph on synthetic clips against prepare_conditionals: tokens must be equal,
    floats within VOICE_BOUNDS. Returns the worst absolute difference of each float output."""
    import onnxruntime as ort

    from tritone.export.chatterbox.tiny import synthetic_voice

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = {name: 0.0 for name in VOICE_BOUNDS}
    for seconds, seed in clips:
        wav = synthetic_voice(seconds=seconds, seed=seed)
        feeds = {name: value.numpy() for name, value in voice_inputs(wav).items()}
        got = dict(zip(VOICE_OUTPUTS, session.run(list(VOICE_OUTPUTS), feeds)))
        expected = {name: value.detach().cpu().numpy() for name, value in reference_voice(models, wav).items()}
        for name in VOICE_OUTPUTS:
            ours, ref = got[name], expected[name]
            if ours.shape != ref.shape:
                raise ParityError(f"{path.name}: {name} has shape {ours.shape} on a {seconds} s clip, "
                                  f"the reference {ref.shape}")
            if name not in VOICE_BOUNDS:
                if not np.array_equal(ours, ref):
                    raise ParityError(f"{path.name}: {name} differs from the reference at "
                                      f"{int((ours != ref).sum())} of {ref.size} tokens on a {seconds} s clip")
                continue
            diff = float(np.max(np.abs(ours - ref)))
            if not diff <= VOICE_BOUNDS[name]:
                raise ParityError(f"{path.name}: {name} differs from the reference by {diff:.3e} "
                                  f"(bound {VOICE_BOUNDS[name]:.0e}) on a {seconds} s clip")
            worst[name] = max(worst[name], diff)
    print(f"  {path.name}: tokens equal to prepare_conditionals' on {len(clips)} clips, max |difference| "
          + ", ".join(f"{name} {diff:.1e}" for name, diff in worst.items()))
    return worst


def export_voice(models, out_dir: Path, tolerance: float = VOICE_TOLERANCE) -> dict:
    """chatterbox_voice's model.onnx in out_dir: (audio 24 kHz, audio_16k) -> the voice's five arrays."""
    from tritone.export.chatterbox.tiny import synthetic_voice

    path = Path(out_dir) / T.ONNX_FILE
    graph = ChatterboxVoiceGraph(models).eval()
    onnx_diff = export_graph(graph, voice_inputs(synthetic_voice(seconds=8.0, seed=0)), list(VOICE_OUTPUTS),
                             DYNAMIC_AXES, path, tolerance=tolerance)
    reference_diff = voice_reference_parity(models, path)
    return {"file": str(path), "inputs": list(VOICE_INPUTS), "outputs": list(VOICE_OUTPUTS),
            "sample_rate": S3GEN_SR, "sample_rate_16k": S3_SR, "resampler_16k": "soxr HQ (graphs_voice.soxr_16k)",
            "batch": 1, "max_abs_onnx_vs_torch": onnx_diff, "max_abs_onnx_vs_reference": reference_diff}
