"""How far chatterbox_flow and chatterbox_vocoder see: streamed windows against the one-shot decode.

A stream's tokens [0, N) are cut into chunks [s, e). Each chunk is decoded as the served
ensemble does it: the flow on the window's tokens [max(0, s - left), min(N, e + lookahead)) with
the voice's whole prompt and the seeded noise of those frames (ensemble/chatterbox/noise.py),
then the vocoder on the window's whole mel (its context is the flow's, in mel frames: 2 per
token), its SOURCE_PHASE taken from the previous window's FRAME_PHASE at the window's first
frame; the chunk's mel frames [2 s, 2 e) and their samples are kept. `streaming_error` gives
the largest |streamed - one-shot| of the mel and of the waveform; `vocoder_error` the vocoder's
own reach on the one-shot mel (windows in mel frames); `window_cost_ms` what one window costs.
The figures, and the context chosen from them, are in ensemble/chatterbox/graphs_flow.py.

Per-window cost (ONNX Runtime, CPU, this 2-core machine shared with other work, so the small
figures spread widely; 12 / 25 / 50 tokens in the window, context included, batch 1):
- tiny, 150-token prompt: flow 150 / 165 / 182 ms, vocoder 20 / 49 / 75 ms (median of 5);
  50-token prompt: flow 69 / 69 / 81 ms, vocoder 17 / 45 / 68 ms.
- small-random (the released sizes), 150-token prompt: flow 14 / 5.3 / 5.3 s in the least loaded
  run, 15 / 18 / 17 s (best of 3) under a load average of 4; vocoder 0.17-0.25 / 0.17-0.45 /
  0.34-0.82 s. 50-token prompt (one run, loaded): flow 6.2 / 9.4 / 12 s, vocoder 0.4 / 0.7 / 1.3 s.
The flow's cost is mostly the prompt and the fixed 10 steps x 2 guidance rows: it barely grows
with the window, so larger chunks cost about the same per call as small ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from tritone.ensemble.chatterbox import noise
from tritone.ensemble.chatterbox.graphs_flow import TOKEN_MEL_RATIO, ChatterboxFlow, ChatterboxVocoder

R = TOKEN_MEL_RATIO


@dataclass
class Case:
    tokens: np.ndarray  # int64 [N]
    prompt_tokens: np.ndarray  # int64 [Tp]
    prompt_mel: np.ndarray  # float32 [2 Tp, 80]
    xvector: np.ndarray  # float32 [192]
    seed: int = 0


def random_case(s3gen, tokens: int, prompt_tokens: int, seed: int = 0) -> Case:
    """Random tokens and a random prompt (mel at log-mel scale) for s3gen's vocabulary and sizes."""
    rng = np.random.default_rng(seed)
    flow = s3gen.flow
    return Case(rng.integers(0, flow.vocab_size, tokens), rng.integers(0, flow.vocab_size, prompt_tokens),
                (rng.standard_normal((R * prompt_tokens, flow.output_size)) - 4.0).astype(np.float32),
                rng.standard_normal(flow.spk_embed_affine_layer.in_features).astype(np.float32), seed)


def voice_case(voice: dict, tokens: np.ndarray, seed: int = 0) -> Case:
    """A case with a reference voice's prompt (Conditionals.gen)."""
    return Case(np.asarray(tokens), voice["prompt_token"][0].detach().numpy(), voice["prompt_feat"][0].detach().numpy(),
                voice["embedding"].detach().reshape(-1).numpy(), seed)


def flow_window(flow: ChatterboxFlow, case: Case, start: int, end: int) -> torch.Tensor:
    """The flow's mel [80, 2 (end - start)] for tokens [start, end) with the case's prompt and noise."""
    prompt = len(case.prompt_tokens)
    with torch.no_grad():
        mel, _ = flow(torch.from_numpy(case.tokens[start:end])[None], torch.tensor([end - start]),
                      torch.from_numpy(case.prompt_tokens)[None], torch.tensor([prompt]),
                      torch.from_numpy(case.prompt_mel)[None], torch.from_numpy(case.xvector)[None],
                      torch.from_numpy(noise.prompt_noise(case.seed, R * prompt))[None],
                      torch.from_numpy(noise.flow_noise(case.seed, R * start, R * (end - start)))[None])
    return mel[0]


def vocoder_window(vocoder: ChatterboxVocoder, mel: torch.Tensor, start_frame: int, phase: np.ndarray, seed: int):
    """(audio [480 F], frame_phase [9, F + 1]) of mel [80, F] starting at absolute frame start_frame."""
    frames = mel.shape[1]
    with torch.no_grad():
        audio, frame_phase = vocoder(mel[None], torch.tensor([frames]), torch.from_numpy(phase)[None],
                                     torch.from_numpy(noise.source_noise(seed, start_frame, frames))[None])
    return audio[0], frame_phase[0]


def one_shot(flow, vocoder, case: Case):
    """(mel [80, 2 N], audio [960 N]) of the whole stream in one window."""
    mel = flow_window(flow, case, 0, len(case.tokens))
    audio, _ = vocoder_window(vocoder, mel, 0, noise.source_phase(case.seed), case.seed)
    return mel, audio


def chunks(total: int, sizes) -> list[tuple[int, int]]:
    """[s, e) chunks of `sizes` tokens (the last size repeats), covering [0, total)."""
    sizes, out, start, i = list(sizes), [], 0, 0
    while start < total:
        end = min(total, start + sizes[min(i, len(sizes) - 1)])
        out.append((start, end))
        start, i = end, i + 1
    return out


def streamed(flow, vocoder, case: Case, sizes, left: int, lookahead: int):
    """(mel, audio) of the stream decoded chunk by chunk, each in its window (module docstring)."""
    total, fs = len(case.tokens), vocoder.frame_samples
    mels, audios = [], []
    phase, previous = noise.source_phase(case.seed), None
    for s, e in chunks(total, sizes):
        ws, we = max(0, s - left), min(total, e + lookahead)
        mel = flow_window(flow, case, ws, we)
        if previous is not None:
            previous_start, frame_phase = previous
            phase = frame_phase[:, R * (ws - previous_start)].numpy()
        audio, frame_phase = vocoder_window(vocoder, mel, R * ws, phase, case.seed)
        previous = (ws, frame_phase)
        keep = slice(R * (s - ws), R * (e - ws))
        mels.append(mel[:, keep])
        audios.append(audio[keep.start * fs:keep.stop * fs])
    return torch.cat(mels, dim=1), torch.cat(audios)


def streaming_error(flow, vocoder, case: Case, sizes, left: int, lookahead: int, reference=None) -> tuple[float, float]:
    """(max |mel streamed - one-shot|, max |audio streamed - one-shot|)."""
    mel, audio = reference if reference is not None else one_shot(flow, vocoder, case)
    smel, saudio = streamed(flow, vocoder, case, sizes, left, lookahead)
    return float((smel - mel).abs().max()), float((saudio - audio).abs().max())


def vocoder_error(vocoder, mel: torch.Tensor, seed: int, chunk_frames: int, left: int, lookahead: int) -> float:
    """max |audio streamed - one-shot| when the vocoder alone decodes mel [80, F] in windows of mel frames."""
    total, fs = mel.shape[1], vocoder.frame_samples
    whole, _ = vocoder_window(vocoder, mel, 0, noise.source_phase(seed), seed)
    phase, previous, parts = noise.source_phase(seed), None, []
    for s, e in chunks(total, [chunk_frames]):
        ws, we = max(0, s - left), min(total, e + lookahead)
        if previous is not None:
            phase = previous[1][:, ws - previous[0]].numpy()
        audio, frame_phase = vocoder_window(vocoder, mel[:, ws:we], ws, phase, seed)
        previous = (ws, frame_phase)
        parts.append(audio[(s - ws) * fs:(e - ws) * fs])
    return float((torch.cat(parts) - whole).abs().max())


def window_cost_ms(flow_session, vocoder_session, case: Case, window_tokens: int, repeats: int = 3,
                   statistic=np.median) -> tuple[float, float]:
    """ms of one flow call and one vocoder call (ONNX Runtime sessions; the median of `repeats`, or
    `statistic`, e.g. np.min on a shared machine) on a window of `window_tokens` tokens (context
    included) with the case's prompt."""
    from tritone.ensemble import tensors as T

    prompt = len(case.prompt_tokens)
    feed = {T.SPEECH_TOKENS: case.tokens[None, :window_tokens], T.SPEECH_TOKEN_LENGTHS: np.array([window_tokens]),
            T.PROMPT_TOKENS: case.prompt_tokens[None], T.PROMPT_TOKEN_LENGTHS: np.array([prompt]),
            T.PROMPT_MEL: case.prompt_mel[None], T.XVECTOR: case.xvector[None],
            T.PROMPT_NOISE: noise.prompt_noise(case.seed, R * prompt)[None],
            T.FLOW_NOISE: noise.flow_noise(case.seed, 0, R * window_tokens)[None]}
    flow_times, vocoder_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        mel, lengths = flow_session.run([T.MEL, T.MEL_LENGTHS], feed)
        flow_times.append(time.perf_counter() - started)
        vfeed = {T.MEL: mel, T.MEL_LENGTHS: lengths, T.SOURCE_PHASE: noise.source_phase(case.seed)[None],
                 T.SOURCE_NOISE: noise.source_noise(case.seed, 0, mel.shape[2])[None]}
        started = time.perf_counter()
        vocoder_session.run([T.AUDIO], vfeed)
        vocoder_times.append(time.perf_counter() - started)
    return 1000 * float(statistic(flow_times)), 1000 * float(statistic(vocoder_times))
